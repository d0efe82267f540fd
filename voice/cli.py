"""The `flask --app app voice ...` commands."""

import secrets
from pathlib import Path

import click
from flask.cli import AppGroup

voice_cli = AppGroup("voice", help="Voice service commands.")

SECRETS = ("VOICE_API_KEY", "VOICE_WEBHOOK_TOKEN")


def fill_env(example_text):
    """The text of a new .env: the example with fresh random values for the secrets."""
    fresh = {name: secrets.token_urlsafe(32) for name in SECRETS}
    lines = []
    for line in example_text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in fresh and not value.strip():
            line = f"{name}={fresh[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n", fresh


@voice_cli.command("init-env")
@click.option("--example", default=".env.example", show_default=True, type=click.Path(dir_okay=False))
@click.option("--target", default=".env", show_default=True, type=click.Path(dir_okay=False))
def init_env(example, target):
    """Write .env from .env.example with fresh secrets, once; print the secrets that one time."""
    target_path = Path(target)
    if target_path.exists():
        click.echo(f"{target} exists; left as it is.")
        return
    text, fresh = fill_env(Path(example).read_text())
    target_path.write_text(text)
    target_path.chmod(0o600)
    click.echo(f"Wrote {target} with fresh secrets (shown this once; they stay in {target}):")
    for name, value in fresh.items():
        click.echo(f"  {name}={value}")
