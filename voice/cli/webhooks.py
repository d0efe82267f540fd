"""`voice webhook ...`: webhook endpoints from the shell, through the same service as the API (voice.webhooks.service).

A refusal is the API's error message, printed without a traceback.
"""

import click
from flask.cli import AppGroup

from voice.cli import voice_cli
from voice.cli.campaigns import refusals_to_errors
from voice.webhooks import service
from voice.webhooks.events import TYPES

webhook_cli = AppGroup("webhook", help="Webhook endpoints: add, list, remove, enable; their deliveries, and sending "
                                       "an event again.")
voice_cli.add_command(webhook_cli)
ENDPOINT_ID = click.IntRange(min=1)


def _line(endpoint):
    """The line `webhook list` prints for an endpoint."""
    state = "enabled" if endpoint["status"] == "enabled" else f"DISABLED {endpoint['disabledAt']}: " \
                                                               f"{endpoint['disabledReason']}"
    return f"{endpoint['id']:>4}  {endpoint['url']}  [{', '.join(endpoint['events'])}]  {state}"


@webhook_cli.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, type=click.Choice(TYPES),
              help="An event type to send (repeat for several).")
@click.option("--description", help="A note of what the endpoint is for.")
@refusals_to_errors
def add(url, events, description):
    """Register URL for the given event types; prints its signing secret, this once."""
    created = service.create(url, list(events), description, "cli")
    click.echo(_line(created))
    click.echo(f"signing secret (shown this once): {created['secret']}")


@webhook_cli.command("list")
@refusals_to_errors
def listing():
    """Every endpoint."""
    endpoints = service.listing()
    for endpoint in endpoints:
        click.echo(_line(endpoint))
    if not endpoints:
        click.echo("no webhook endpoint")


@webhook_cli.command("remove")
@click.argument("endpoint_id", type=ENDPOINT_ID)
@refusals_to_errors
def remove(endpoint_id):
    """Remove an endpoint with its deliveries."""
    service.remove(endpoint_id)
    click.echo(f"removed webhook endpoint {endpoint_id}")


@webhook_cli.command("enable")
@click.argument("endpoint_id", type=ENDPOINT_ID)
@refusals_to_errors
def enable(endpoint_id):
    """Re-enable a disabled endpoint."""
    click.echo(_line(service.enable(endpoint_id)))


@webhook_cli.command("deliveries")
@click.argument("endpoint_id", type=ENDPOINT_ID)
@click.option("--page", type=click.IntRange(min=1, max=10_000), default=1, show_default=True)
@refusals_to_errors
def deliveries(endpoint_id, page):
    """The endpoint's delivery attempts, newest first."""
    attempts = service.attempts(endpoint_id, page)
    for attempt in attempts:
        code = attempt["statusCode"] if attempt["statusCode"] is not None else "-"
        click.echo(f"{attempt['attemptedAt']}  {attempt['eventId']}  {attempt['eventType']:<26} {code!s:>4} "
                   f"{attempt['durationMs']:>6} ms  {attempt['deliveryStatus']:<10} {attempt['error'] or ''}")
    if not attempts:
        click.echo("no delivery attempt" + (" on this page" if page > 1 else " yet"))


@webhook_cli.command("retry")
@click.argument("endpoint_id", type=ENDPOINT_ID)
@click.argument("event_id")
@refusals_to_errors
def retry(endpoint_id, event_id):
    """Send the event EVENT_ID (evt_...) to the endpoint again; the worker sends it."""
    service.retry(endpoint_id, event_id)
    click.echo(f"event {event_id} queued again for webhook endpoint {endpoint_id}")
