"""`voice campaign ...` and `voice dnc ...`: campaigns and the do-not-call list from the shell.

The commands call the same services as the API (voice.campaigns.service and .dnc), as an admin
would: every campaign is seen, and a refusal is the API's error message, printed without a traceback.
"""

import functools
import json

import click
from flask import current_app
from flask.cli import AppGroup

from voice.campaigns import dnc, exports, service
from voice.campaigns.contacts import rows_of_csv
from voice.cli import voice_cli
from voice.errors import APIError
from voice.phone import InvalidPhone, normalise
from voice.store.db import StoreUnavailable

campaign_cli = AppGroup("campaign", help="Outbound campaigns: create one from a CSV, watch, pause, resume, cancel, "
                                         "export its results.")
dnc_cli = AppGroup("dnc", help="The do-not-call list: numbers no campaign calls.")
voice_cli.add_command(campaign_cli)
voice_cli.add_command(dnc_cli)

SHOWN_REFUSALS = 50
CAMPAIGN_ID = click.IntRange(min=1)


def refusals_to_errors(command):
    """Turn the services' refusals (APIError) and a database outage into a click error with its message."""

    @functools.wraps(command)
    def wrapped(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except APIError as exc:
            _print_refused(exc.extra.get("refused") or [], err=True)
            raise click.ClickException(exc.message) from None
        except StoreUnavailable as exc:
            raise click.ClickException(f"the database is unavailable: {exc}") from None

    return wrapped


def _print_refused(refused, err=False):
    """The refused rows of a list, the first SHOWN_REFUSALS of them."""
    for refusal in refused[:SHOWN_REFUSALS]:
        click.echo(f"  row {refusal['row']}: {refusal['phone'] or '-'}: {refusal['error']}", err=err)
    if len(refused) > SHOWN_REFUSALS:
        click.echo(f"  ... and {len(refused) - SHOWN_REFUSALS} more", err=err)


def _echo_json(value):
    click.echo(json.dumps(value, indent=2))


def _counts(campaign):
    """`3 pending, 1 completed`: the contact statuses that have contacts."""
    return ", ".join(f"{count} {status}" for status, count in campaign["counts"].items() if count) or "none"


def _status(campaign):
    if campaign["status"] == "paused":
        return f"paused ({campaign['pausedReason']})"
    return campaign["status"]


def _window(window):
    if not window:
        return "any time"
    days = "every day" if len(window["days"]) == 7 else ",".join(window["days"])
    skip = f", not on {', '.join(window['skip'])}" if window["skip"] else ""
    return f"{window['from']}-{window['to']} {days}{skip}"


def _money(amounts):
    return ", ".join(f"{amount:g} {currency}" for currency, amount in amounts.items()) or "0"


def _summary(campaign):
    """The one line `campaign list` prints for a campaign."""
    return (f"{campaign['id']:>5}  {_status(campaign):<16} {campaign['name']}: {campaign['contacts']} contacts "
            f"({_counts(campaign)}); next call {campaign['nextAttemptAt'] or '-'}")


def _details(campaign):
    """The lines `campaign show` prints."""
    budget = campaign["budget"]
    rows = [
        ("status", _status(campaign)),
        ("step", campaign["step"] or "(the flow's outbound start)"),
        ("window", _window(campaign["window"]) + (f" ({campaign['timezone']})" if campaign["timezone"] else "")),
        ("retry", campaign["retry"] or "none"),
        ("starts", campaign["startAt"]),
        ("not after", campaign["notAfter"] or "-"),
        ("pacing", f"{campaign['maxConcurrent']} at once, {campaign['perMinute']} a minute"),
        ("budget", f"{budget['amount']:g} {budget['currency']}" if budget else "none"),
        ("cost", _money(campaign["cost"])),
        ("contacts", f"{campaign['contacts']}: {_counts(campaign)}"),
        ("in progress", str(campaign["inProgress"])),
        ("next call", campaign["nextAttemptAt"] or "-"),
        ("created", f"{campaign['createdAt']} by {campaign['createdBy']}"),
    ]
    if campaign["finishedAt"]:
        rows.append(("finished", campaign["finishedAt"]))
    return [f"Campaign {campaign['id']}: {campaign['name']}"] + [f"  {name:<12} {value}" for name, value in rows]


@campaign_cli.command("create")
@click.argument("contacts", type=click.File("rb"))
@click.option("--name", help="Default: Campaign of <date time>.")
@click.option("--step", help="The flow step each call starts at (default: the flow's outbound start).")
@click.option("--window", help="When calls may start in each contact's local time: 08:00-20:00, or the JSON object "
                               "with from, to, days, skip (default: any time).")
@click.option("--retry", help='Delays between attempts, e.g. "15m 1h 1d"; "none": no retry (default: "30m 2h").')
@click.option("--timezone", help="IANA zone of contacts with neither their own nor their number's.")
@click.option("--start-at", help="ISO 8601 (default: now).")
@click.option("--not-after", help="ISO 8601: no call starts after it.")
@click.option("--max-concurrent", type=int, help="Calls in progress at once (default 5).")
@click.option("--per-minute", type=int, help="New calls a minute (default 30).")
@click.option("--budget", help='Pause the campaign when its calls cost this much, e.g. "500 KES".')
@click.option("--owner", default="cli", show_default=True, help="The label the campaign is created under (a dialer "
                                                                "key with this label sees it).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@refusals_to_errors
def create(contacts, name, step, window, retry, timezone, start_at, not_after, max_concurrent, per_minute, budget,
           owner, as_json):
    """Create a campaign from CONTACTS, a CSV file (- for stdin) with a phone column, an optional timezone column,
    and any other columns as each contact's variables."""
    spec = {"name": name, "step": step, "window": window, "retry": retry, "timezone": timezone, "startAt": start_at,
            "notAfter": not_after, "maxConcurrent": max_concurrent, "perMinute": per_minute, "budget": budget}
    spec = {key: value for key, value in spec.items() if value is not None}
    campaign, accepted, refused = service.create(spec, rows_of_csv(contacts), owner,
                                                 current_app.extensions["voice_flow"])
    if as_json:
        _echo_json({"campaign": campaign, "accepted": accepted, "refused": refused})
        return
    click.echo(f"Campaign {campaign['id']} ({campaign['name']}) is {_status(campaign)}: {accepted} contacts "
               f"accepted, {len(refused)} refused{':' if refused else '.'}")
    _print_refused(refused)


@campaign_cli.command("list")
@click.option("--page", type=click.IntRange(1, 10_000), default=1, show_default=True, help=f"{service.PAGE} a page.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@refusals_to_errors
def list_campaigns(page, as_json):
    """The campaigns, newest first, with their figures."""
    campaigns = service.listing(None, page)
    if as_json:
        _echo_json({"campaigns": campaigns})
        return
    if not campaigns:
        click.echo("No campaigns." if page == 1 else f"No campaigns on page {page}.")
    for campaign in campaigns:
        click.echo(_summary(campaign))


@campaign_cli.command("show")
@click.argument("campaign_id", metavar="ID", type=CAMPAIGN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@refusals_to_errors
def show(campaign_id, as_json):
    """A campaign's rules, status, counts per contact status, calls in progress, cost and next call."""
    campaign = service.show(campaign_id)
    if as_json:
        _echo_json(campaign)
    else:
        click.echo("\n".join(_details(campaign)))


@campaign_cli.command("pause")
@click.argument("campaign_id", metavar="ID", type=CAMPAIGN_ID)
@refusals_to_errors
def pause(campaign_id):
    """Stop starting calls; calls in progress finish."""
    campaign = service.pause(campaign_id)
    click.echo(f"Campaign {campaign_id} is {_status(campaign)}; {campaign['inProgress']} calls still in progress.")


@campaign_cli.command("resume")
@click.argument("campaign_id", metavar="ID", type=CAMPAIGN_ID)
@click.option("--budget", help='A new budget, e.g. "1000 KES" (needed when the old one was reached).')
@refusals_to_errors
def resume(campaign_id, budget):
    """Start calling again."""
    campaign = service.resume(campaign_id, None, budget)
    click.echo(f"Campaign {campaign_id} is {_status(campaign)}.")


@campaign_cli.command("cancel")
@click.argument("campaign_id", metavar="ID", type=CAMPAIGN_ID)
@refusals_to_errors
def cancel(campaign_id):
    """End the campaign: contacts still to be called are cancelled; calls in progress finish."""
    campaign = service.cancel(campaign_id)
    click.echo(f"Campaign {campaign_id} is cancelled: {campaign['counts']['cancelled']} contacts cancelled, "
               f"{campaign['inProgress']} calls still in progress.")


@campaign_cli.command("export")
@click.argument("campaign_id", metavar="ID", type=CAMPAIGN_ID)
@click.option("--attempts", is_flag=True, help="A row per attempt instead of a row per contact.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="The CSV file to write (default: standard output).")
@refusals_to_errors
def export(campaign_id, attempts, output):
    """The campaign's results as CSV, as GET /voice/campaigns/ID/results.csv (or attempts.csv) gives them."""
    chunks = (exports.attempts_csv if attempts else exports.results_csv)(campaign_id)  # a 404 before any file
    if output is None:
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)
    click.echo(f"Wrote campaign {campaign_id}'s {'attempts' if attempts else 'results'} to {output}.", err=True)


def _numbers(raw):
    """The E.164 forms of the numbers given (each may be comma-separated), once each, or a usage error."""
    numbers = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    try:
        return list(dict.fromkeys(normalise(number) for number in numbers))
    except InvalidPhone as exc:
        raise click.BadParameter(str(exc), param_hint="NUMBER") from None


@dnc_cli.command("add")
@click.argument("numbers", metavar="NUMBER...", nargs=-1, required=True)
@click.option("--owner", default="cli", show_default=True, help="Who added them, as the list shows.")
@refusals_to_errors
def dnc_add(numbers, owner):
    """Put numbers on the do-not-call list: no campaign calls them (checked at import and before each call)."""
    numbers = _numbers(numbers)
    added = dnc.add(numbers, owner, "cli")
    already = [number for number in numbers if number not in added]
    click.echo(f"Added {len(added)} number(s) to the do-not-call list" + (": " + ", ".join(added) if added else "."))
    if already:
        click.echo("Already on it: " + ", ".join(already))


@dnc_cli.command("remove")
@click.argument("numbers", metavar="NUMBER...", nargs=-1, required=True)
@refusals_to_errors
def dnc_remove(numbers):
    """Take numbers off the do-not-call list."""
    numbers = _numbers(numbers)
    removed = dnc.remove(numbers)
    click.echo(f"Removed {removed} of {len(numbers)} number(s) from the do-not-call list.")


@dnc_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as a JSON list.")
@refusals_to_errors
def dnc_list(as_json):
    """Every number on the do-not-call list, in number order, with when, by whom and how it was added."""
    entries = list(_every_entry())
    if as_json:
        _echo_json(entries)
        return
    if not entries:
        click.echo("The do-not-call list is empty.")
    for entry in entries:
        click.echo(f"{entry['phone']:<16} {entry['addedAt']}  {entry['source']:<4} {entry['addedBy'] or '-'}")


def _every_entry():
    """The list's entries, a page at a time."""
    after = None
    while True:
        page = dnc.page(after)
        yield from page
        if len(page) < dnc.PAGE:
            return
        after = page[-1]["phone"]
