"""Prometheus metrics: what operators watch, summed over every gunicorn worker in one scrape.

Under gunicorn, gunicorn.conf.py gives each start a fresh PROMETHEUS_MULTIPROC_DIR before any
worker imports this module, and tells prometheus-client when a worker dies; a scrape of any
worker then reads every worker's figures (prometheus-client's multiprocess mode). Without it
(tests, `flask run`) the figures are the process's own.

Labels are bounded: routes are URL rules, never paths; AT's values (states, hangup causes,
currencies, entry statuses) are kept only when known, else counted as `other`. No sessionId,
phone number or key is ever a label.
"""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY, multiprocess
from prometheus_client.core import GaugeMetricFamily

from voice.calls import STATE_RANKS

# Values AT sends that may become labels; anything else is `other`, so a forged callback cannot
# make new series.
HANGUP_CAUSES = {
    "NORMAL_CLEARING", "CALL_REJECTED", "USER_BUSY", "NO_ANSWER", "NO_USER_RESPONSE", "UNALLOCATED_NUMBER",
    "NORMAL_TEMPORARY_FAILURE", "ORIGINATOR_CANCEL", "RECOVERY_ON_TIMER_EXPIRE", "SUBSCRIBER_ABSENT",
    "NETWORK_OUT_OF_ORDER", "SERVICE_UNAVAILABLE", "INVALID_NUMBER_FORMAT", "DESTINATION_OUT_OF_ORDER",
    "NORMAL_UNSPECIFIED", "MEDIA_TIMEOUT", "LOSE_RACE", "SYSTEM_SHUTDOWN", "UNKNOWN",
}
CURRENCIES = {"KES", "UGX", "TZS", "RWF", "NGN", "MWK", "ZMW", "ETB", "GHS", "XOF", "XAF", "ZAR", "USD", "EUR",
              "GBP"}
ENTRY_STATUSES = {"Queued", "InvalidPhoneNumber", "DestinationNotSupported", "InsufficientCredit",
                  "InvalidCallerId", "NotAllowed", "None"}
EVENT_TYPES = set(STATE_RANKS) | {"Digits", "Recording", "Notification"}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("voice_http_requests_total", "HTTP requests answered, by route, method and status.",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("voice_http_request_duration_seconds", "Time to answer an HTTP request, by route.",
                         ["route"], buckets=LATENCY_BUCKETS)
DIALOUTS = Counter("voice_dialouts_total", "Dial-outs, by outcome and the status AT gave the entry.",
                   ["outcome", "at_status"])
AT_REQUESTS = Counter("voice_at_requests_total", "Requests to AT's API, by endpoint and outcome.",
                      ["endpoint", "outcome"])
AT_LATENCY = Histogram("voice_at_request_duration_seconds", "Time AT's API took to answer, by endpoint.",
                       ["endpoint"], buckets=LATENCY_BUCKETS)
CALLBACKS = Counter("voice_callbacks_total", "AT notifications stored, by source URL and event type.",
                    ["source", "type"])
DUPLICATES = Counter("voice_callback_duplicates_total", "AT notifications that repeated a stored one, by source.",
                     ["source"])
CALLS_ENDED = Counter("voice_calls_ended_total", "Final notifications of calls, by final state and hangup cause.",
                      ["state", "hangup_cause"])
CALL_DURATION = Histogram("voice_call_duration_seconds", "Duration of ended calls, as AT reports it.",
                          buckets=(0, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600))
CALL_COST = Counter("voice_call_cost_total", "What ended calls cost, as AT reports it, by currency.", ["currency"])
STORE_BATCHES = Counter("voice_store_batches_total", "Transactions of the store's group commit, by outcome.",
                        ["outcome"])
STORE_COMMIT = Histogram("voice_store_commit_seconds", "Time to store and commit one batch of notifications.",
                         buckets=LATENCY_BUCKETS)
STORE_WAITING = Gauge("voice_store_waiting_writes", "Requests waiting for their notification to be stored.",
                      multiprocess_mode="livesum")
REFUSALS = Counter("voice_refusals_total", "Requests refused, by reason.", ["reason"])

REFUSAL_REASONS = ("bad_key", "bad_token", "ip", "rate_limit", "country", "premium_number", "busy",
                   "unknown_session", "role")


def known(value, allowed):
    """`value` if it is one of `allowed`, else `other` (or `none` when missing)."""
    if value is None:
        return "none"
    return value if value in allowed else "other"


_children = {}


def child(metric, *labels):
    """`metric.labels(*labels)`, looked up once: callbacks pass the same few label sets again and again."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def observe_request(route, method, status, seconds):
    """Count an answered HTTP request and its latency."""
    child(HTTP_REQUESTS, route, method, status).inc()
    child(HTTP_LATENCY, route).observe(seconds)


def observe_notification(note, source, kind, new):
    """Count a stored AT notification, and a call's end with its figures."""
    if not new:
        child(DUPLICATES, source).inc()
        return
    child(CALLBACKS, source, known(kind, EVENT_TYPES)).inc()
    if note.is_final:
        child(CALLS_ENDED, known(note.state, EVENT_TYPES), known(note.hangup_cause, HANGUP_CAUSES)).inc()
        if note.duration is not None:
            CALL_DURATION.observe(note.duration)
        if note.amount is not None:
            child(CALL_COST, known(note.currency, CURRENCIES)).inc(float(note.amount))


def refused(reason):
    """Count a refusal (see REFUSAL_REASONS)."""
    child(REFUSALS, reason).inc()


def exposition(campaigns=None, webhooks=None):
    """The Prometheus text of every worker's metrics (or this process's, outside gunicorn), and the campaigns' figures
    (`campaigns`: voice.campaigns.figures.account_figures(), read from the database at each scrape), and the webhooks'
    (`webhooks`: voice.webhooks.delivery.figures(), likewise)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    if campaigns is not None:
        body += generate_latest(_CampaignFigures(campaigns))
    if webhooks is not None:
        body += generate_latest(_Gauges((
            ("voice_webhook_deliveries", "Webhook deliveries kept (30 days once finished), by status: failed ones "
             "gave up after 24 hours of retries.", "status", webhooks["deliveries"]),
            ("voice_webhook_endpoints", "Webhook endpoints, enabled or disabled (after failing for days).", "state",
             webhooks["endpoints"]))))
    return body, CONTENT_TYPE_LATEST


class _Gauges:
    """Figures read from the database as gauges: (name, help, label, {label value: count}) each."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        for name, text, label, values in self.families:
            family = GaugeMetricFamily(name, text, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family


class _CampaignFigures(_Gauges):
    """The campaigns' figures as gauges: they are rows in the database, shared by the worker and every web process."""

    def __init__(self, figures):
        super().__init__((
            ("voice_campaigns", "Campaigns, by status.", "status", figures["campaigns"]),
            ("voice_campaign_calls_in_progress", "Campaign calls claimed, dialling or placed and not ended, by their "
             "campaign's status.", "campaign_status", figures["in_progress"]),
            ("voice_campaign_attempts", "Campaign attempts ended, by outcome (a count that only grows while campaigns "
             "are kept).", "outcome", figures["attempts"]),
        ))
