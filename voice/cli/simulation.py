"""The simulated side of AT from the shell: `voice simulated-at` serves the simulated AT, `voice simulate` plays a call."""

import logging

import click

from voice import settings
from voice.cli import voice_cli


def _behaviour(kind, value):
    """What a test number does, in a few words."""
    if kind == "press":
        return f"presses {value}"
    if kind == "hangs_up":
        return "hangs up at the first question"
    return str(value or kind)


@voice_cli.command("simulated-at")
@click.option("--port", type=int, help="Port to listen on (default: VOICE_SIMULATED_AT_PORT, 8001).")
@click.option("--service-url", help="The service whose webhooks the simulated callee drives (default: http://127.0.0.1:$PORT).")
@click.option("--digits", help="Keys the simulated callee presses, comma-separated (default: VOICE_SIMULATED_AT_DIGITS, 1).")
@click.option("--answer-seconds", type=float,
              help="How long a queued call rings before the callee answers (default: VOICE_SIMULATED_AT_ANSWER_SECONDS, 2).")
@click.option("--bridge-seconds", default=10.0, show_default=True,
              help="How long a call stays connected at a Dial, Enqueue or Conference (to try transfers and queues).")
def simulated_at(port, service_url, digits, answer_seconds, bridge_seconds):
    """Serve a simulated AT voice API on 127.0.0.1 that plays the callee of each call it queues."""
    from flask import current_app

    from voice.at.simulated import TEST_NUMBERS, SimulatedAT

    config = current_app.config
    port = port or int(config["VOICE_SIMULATED_AT_PORT"])
    service_url = service_url or f"http://127.0.0.1:{config['PORT']}"
    digits = digits if digits is not None else config["VOICE_SIMULATED_AT_DIGITS"]
    answer_seconds = answer_seconds if answer_seconds is not None else config["VOICE_SIMULATED_AT_ANSWER_SECONDS"]
    server = SimulatedAT(port=port, service_url=service_url, token=config.get("VOICE_WEBHOOK_TOKEN") or None,
                         digits=tuple(d.strip() for d in digits.split(",") if d.strip()), bridge_seconds=bridge_seconds,
                         answer_delay=answer_seconds)
    say = click.echo
    if settings.current().log_format == "json":  # beside the service, every line is JSON
        say = logging.getLogger("voice.at.simulated").warning
    say(f"SIMULATED Africa's Talking voice API on {server.url} (no real calls); callees drive {service_url}")
    say("Test numbers: " + ", ".join(f"{number} {_behaviour(kind, value)}" for number, (kind, value) in TEST_NUMBERS.items()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# The command's name before it was called the simulated AT everywhere; kept for scripts that use it.
voice_cli.add_command(click.Command("fake-at", params=simulated_at.params, callback=simulated_at.callback,
                                    help="The old name of simulated-at.", hidden=True))


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
        through_at = settings.current().mode == "simulated" and digits is not None
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
