"""The `flask --app app voice ...` commands."""

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


@voice_cli.command("prune")
@click.option("--older-than", "days", type=click.IntRange(min=1), help="days since a call ended "
              "[default: VOICE_RETENTION_DAYS]")
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
def prune(days, dry_run):
    """Delete calls that ended more than DAYS days ago, their events and recordings, in small batches."""
    from flask import current_app

    from voice.store import retention
    from voice.store.db import StoreUnavailable

    days = days or current_app.config["VOICE_RETENTION_DAYS"]
    if not days:
        raise click.UsageError("give --older-than DAYS, or set VOICE_RETENTION_DAYS")
    cutoff = retention.cutoff_for(days)
    try:
        if dry_run:
            calls, events, recordings = retention.count(cutoff)
            click.echo(f"would remove {calls} calls and {events} events that ended before {cutoff:%Y-%m-%d %H:%M} UTC, "
                       f"and {recordings} recordings of those calls")
            return
        calls, events, recordings = retention.prune(cutoff)
    except StoreUnavailable as exc:
        raise click.ClickException(f"the database is unavailable: {exc}") from None
    click.echo(f"removed {calls} calls and {events} events that ended before {cutoff:%Y-%m-%d %H:%M} UTC, "
               f"and {recordings} recordings of those calls")


from voice.cli import campaigns, simulation, webhooks, worker  # noqa: E402,F401  (register their commands on voice_cli)
