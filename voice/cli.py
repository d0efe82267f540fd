"""The `flask --app app voice ...` commands."""

import logging
import secrets
from pathlib import Path

import click
from flask.cli import AppGroup

voice_cli = AppGroup("voice", help="Voice service commands.")

SECRETS = ("VOICE_API_KEY", "VOICE_WEBHOOK_TOKEN", "SECRET_KEY")


def fill_env(example_text):
    """The text of a new .env: the example with fresh random values for the secrets (added if it lacks one)."""
    fresh = {name: secrets.token_urlsafe(32) for name in SECRETS}
    lines, named = [], set()
    for line in example_text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in fresh:
            named.add(name)
            if not value.strip():
                line = f"{name}={fresh[name]}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in fresh.items() if name not in named]
    return "\n".join(lines) + "\n", fresh


@voice_cli.command("init-env")
@click.option("--example", default=".env.example", show_default=True, type=click.Path(dir_okay=False))
@click.option("--target", default=".env", show_default=True, type=click.Path(dir_okay=False))
def init_env(example, target):
    """Write .env from .env.example with fresh secrets, once; print the secrets that one time.

    An existing .env is left as it is, but for secrets it does not name at all (added by a
    newer version of the service), which are appended with fresh values.
    """
    target_path = Path(target)
    if target_path.exists():
        text = target_path.read_text()
        named = {line.partition("=")[0].strip() for line in text.splitlines() if "=" in line}
        missing = [name for name in SECRETS if name not in named]
        if not missing:
            click.echo(f"{target} exists; left as it is.")
            return
        added = "".join(f"{name}={secrets.token_urlsafe(32)}\n" for name in missing)
        target_path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + added)
        click.echo(f"{target} exists; added the secrets it lacked: {', '.join(missing)}.")
        return
    text, fresh = fill_env(Path(example).read_text())
    target_path.write_text(text)
    target_path.chmod(0o600)
    click.echo(f"Wrote {target} with fresh secrets (shown this once; they stay in {target}):")
    for name, value in fresh.items():
        click.echo(f"  {name}={value}")


flow_cli = AppGroup("flow", help="Check and show call flow files.")
voice_cli.add_command(flow_cli)


def _load_or_report(path):
    """The checked flow at `path` (the configured one when None), or None after printing its problems."""
    from flask import current_app

    from voice import flows

    try:
        return flows.load(path or current_app.config["VOICE_FLOW_FILE"] or None)
    except flows.FlowError as exc:
        click.echo(f"{exc.source}: {len(exc.problems)} problem(s)", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        return None


@flow_cli.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--upload-media", is_flag=True, help="Offer to have AT fetch every Play URL and holdMusic of the flow now.")
@click.option("--yes", is_flag=True, help="With --upload-media: upload without asking.")
def flow_check(file, upload_media, yes):
    """Check a flow file (default: VOICE_FLOW_FILE, else the shipped flow); exit 1 listing every problem."""
    from voice import flows

    flow = _load_or_report(file)
    if flow is None:
        raise SystemExit(1)
    click.echo(f"{flow.source}: OK, {len(flow.steps)} steps, calls start at {flow.inbound!r}")
    if not upload_media:
        return
    urls = flows.media_urls(flow)
    if not urls:
        click.echo("No Play URL or holdMusic in this flow: nothing to upload.")
        return
    click.echo(f"{len(urls)} audio file(s) AT would fetch on first play:")
    for url in urls:
        click.echo(f"  {url}")
    if not yes and not click.confirm("Have AT fetch and cache them now?", default=True):
        return
    failed = sum(not _upload(url) for url in urls)
    if failed:
        raise SystemExit(1)


media_cli = AppGroup("media", help="Audio files AT plays.")
voice_cli.add_command(media_cli)


@media_cli.command("upload")
@click.argument("url")
@click.option("--phone", help="Our AT number the file is for (default: AT_VOICE_NUMBER).")
def media_upload(url, phone):
    """Have AT fetch and cache the .mp3 or .wav at URL, so its first play starts at once."""
    if not _upload(url, phone):
        raise SystemExit(1)


def _upload(url, phone=None):
    """Upload one file through the AT client, printing the outcome; True when AT took it."""
    from voice.at.client import ATError, Busy, NotConfigured, get_client
    from voice.fields import AUDIO_URL

    if not AUDIO_URL.match(url):
        click.echo(f"  {url}: not an http(s) URL of an .mp3 or .wav file", err=True)
        return False
    try:
        get_client().upload_media(url, phone)
    except NotConfigured as exc:
        click.echo(f"  {url}: AT is not configured ({', '.join(exc.missing)} missing)", err=True)
        return False
    except (ATError, Busy) as exc:
        click.echo(f"  {url}: {getattr(exc, 'message', 'too many requests to AT at once')}", err=True)
        return False
    click.echo(f"  {url}: uploaded")
    return True


@flow_cli.command("show")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.argument("step", required=False)
def flow_show(file, step):
    """Print the XML a step renders (default: the inbound start step)."""
    from flask import current_app

    from voice.flows import ivr, voicexml

    flow = _load_or_report(file)
    if flow is None:
        raise SystemExit(1)
    name = step or flow.inbound
    if name not in flow.steps:
        click.echo(f"no step {name!r}; steps: {', '.join(flow.steps)}", err=True)
        raise SystemExit(1)
    base = current_app.config["VOICE_PUBLIC_URL"] or "http://localhost:8000"
    with current_app.test_request_context(base_url=base):
        try:
            actions = ivr.step_actions(flow, flow.steps[name], {})
        except ivr.FlowProblem as exc:
            click.echo(str(exc), err=True)
            raise SystemExit(1) from None
        click.echo(voicexml.render(actions, ivr.step_url))


@voice_cli.command("fake-at")
@click.option("--port", type=int, help="Port to listen on (default: VOICE_FAKE_AT_PORT, 8001).")
@click.option("--service-url", help="The service whose webhooks the simulated callee drives (default: http://127.0.0.1:$PORT).")
@click.option("--digits", help="Keys the simulated callee presses, comma-separated (default: VOICE_FAKE_AT_DIGITS, 1).")
@click.option("--answer-seconds", type=float,
              help="How long a queued call rings before the callee answers (default: VOICE_FAKE_AT_ANSWER_SECONDS, 2).")
@click.option("--bridge-seconds", default=10.0, show_default=True,
              help="How long a call stays connected at a Dial, Enqueue or Conference (to try transfers and queues).")
def fake_at(port, service_url, digits, answer_seconds, bridge_seconds):
    """Serve a simulated AT voice API on 127.0.0.1 that plays the callee of each call it queues."""
    from flask import current_app

    from voice.at.fake import TEST_NUMBERS, FakeAT

    config = current_app.config
    port = port or int(config["VOICE_FAKE_AT_PORT"])
    service_url = service_url or f"http://127.0.0.1:{config['PORT']}"
    digits = digits if digits is not None else config["VOICE_FAKE_AT_DIGITS"]
    answer_seconds = answer_seconds if answer_seconds is not None else config["VOICE_FAKE_AT_ANSWER_SECONDS"]
    server = FakeAT(port=port, service_url=service_url, token=config.get("VOICE_WEBHOOK_TOKEN") or None,
                    digits=tuple(d.strip() for d in digits.split(",") if d.strip()), bridge_seconds=bridge_seconds,
                    answer_delay=answer_seconds)
    say = click.echo
    if str(config.get("LOG_FORMAT", "text")).lower() == "json":  # beside the service, every line is JSON
        say = logging.getLogger("voice.at.fake").warning
    say(f"SIMULATED Africa's Talking voice API on {server.url} (no real calls); callees drive {service_url}")
    say("Test numbers: " + ", ".join(f"{number} {value or kind}" for number, (kind, value) in TEST_NUMBERS.items()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@voice_cli.command("simulate")
@click.option("--url", help="The service to call (default: http://127.0.0.1:$PORT).")
@click.option("--inbound/--outbound", default=True, help="A call to our number (default), or one we placed.")
@click.option("--caller", default="+254712345678", show_default=True, help="The phone user's number.")
@click.option("--digits", help="Keys to press at each GetDigits, comma-separated (default: ask at the terminal).")
@click.option("--token", help="The webhook token (default: VOICE_WEBHOOK_TOKEN).")
@click.option("--client", help="Call from this browser or app client (AT's WebRTC SDK) instead of a phone.")
@click.option("--dial", "dialled", help="With --client: the number the agent dials, as typed (e.g. 0712345678).")
@click.option("--through-at/--direct", default=None,
              help="Play the call inside the simulated AT (so it can queue, be dequeued and be transferred) or in "
                   "this command. Default: through the simulated AT in simulated mode when --digits is given.")
def simulate(url, inbound, caller, digits, token, client, dialled, through_at):
    """Play AT's part in one call against a running service, printing what the caller hears."""
    import sys

    from flask import current_app

    from voice.at.simulator import SimulatedCall, SimulationError

    config = current_app.config
    if through_at is None:
        through_at = config["VOICE_MODE"] == "simulated" and digits is not None
    if through_at:
        if digits is None:
            raise click.UsageError("--through-at plays the call in the simulated AT: give the keys with --digits")
        spec = {"url": url or f"http://127.0.0.1:{config['PORT']}", "direction": "Inbound" if inbound else "Outbound",
                "caller": caller, "digits": [d.strip() for d in digits.split(",")], "client": client,
                "dialled": dialled, "username": config.get("AT_USERNAME") or "simulated",
                "token": token if token is not None else (config.get("VOICE_WEBHOOK_TOKEN") or None),
                "ourNumber": config.get("AT_VOICE_NUMBER") or "+254711000000"}
        if _simulate_through_at(config, spec):
            return
    scripted = [d.strip() for d in digits.split(",")] if digits is not None else None
    ask = None
    if scripted is None and sys.stdin.isatty():
        def ask(action):
            return click.prompt("  keys to press (Enter for none)", default="", show_default=False).strip()
    if dialled and not client:
        raise click.UsageError("--dial is the number a client dials: give --client too")
    options = {"token": token if token is not None else (config.get("VOICE_WEBHOOK_TOKEN") or None),
               "our_number": config.get("AT_VOICE_NUMBER") or "+254711000000",
               "digits": scripted, "ask": ask, "say": click.echo}
    base = url or f"http://127.0.0.1:{config['PORT']}"
    if client:
        call = SimulatedCall.from_client(base, config.get("AT_USERNAME") or "simulated", client, dialled or "", **options)
    else:
        call = SimulatedCall(base, direction="Inbound" if inbound else "Outbound", caller=caller, **options)
    try:
        call.run()
    except SimulationError as exc:
        click.echo(f"simulate: {exc}", err=True)
        raise SystemExit(1) from None


def _simulate_through_at(config, spec):
    """Have the simulated AT play the call, echoing its transcript; False when it cannot be reached."""
    import requests

    target = (config.get("AT_VOICE_API_URL") or "").rstrip("/") + "/simulator/calls"
    try:
        response = requests.post(target, json=spec, headers={"apiKey": config.get("AT_API_KEY") or ""},
                                 stream=True, timeout=(3, 120))
    except requests.RequestException:
        click.echo(f"simulate: no simulated AT at {target}; playing the call here (it cannot queue or be transferred)",
                   err=True)
        return False
    with response:
        if response.status_code != 200:
            click.echo(f"simulate: the simulated AT at {target} answered {response.status_code}; playing here", err=True)
            return False
        try:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("ERROR "):
                    click.echo(f"simulate: {line[6:]}", err=True)
                    raise SystemExit(1)
                click.echo(line)
        except requests.RequestException as exc:  # the call was placed: never play it twice
            click.echo(f"simulate: lost the simulated AT mid-call ({type(exc).__name__})", err=True)
            raise SystemExit(1) from None
    return True


@voice_cli.command("prune")
@click.option("--older-than", "days", type=click.IntRange(min=1), help="days since a call ended "
              "[default: VOICE_RETENTION_DAYS]")
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
def prune(days, dry_run):
    """Delete calls that ended more than DAYS days ago, and their events, in small batches."""
    from flask import current_app

    from voice.store import retention
    from voice.store.db import StoreUnavailable

    days = days or current_app.config["VOICE_RETENTION_DAYS"]
    if not days:
        raise click.UsageError("give --older-than DAYS, or set VOICE_RETENTION_DAYS")
    cutoff = retention.cutoff_for(days)
    try:
        if dry_run:
            calls, events = retention.count(cutoff)
            click.echo(f"would remove {calls} calls and {events} events that ended before {cutoff:%Y-%m-%d %H:%M} UTC")
            return
        calls, events = retention.prune(cutoff)
    except StoreUnavailable as exc:
        raise click.ClickException(f"the database is unavailable: {exc}") from None
    click.echo(f"removed {calls} calls and {events} events that ended before {cutoff:%Y-%m-%d %H:%M} UTC")
