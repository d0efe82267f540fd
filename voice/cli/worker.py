"""`voice worker`: the process beside the web one that runs background work (campaigns) on huey."""

import click

from voice.cli import voice_cli


@voice_cli.command("worker")
@click.option("--threads", type=click.IntRange(1, 64),
              help="Tasks run at once, dials included (default: VOICE_WORKER_THREADS, 4).")
def worker(threads):
    """Run the background worker until stopped: campaign dispatch, retries and housekeeping."""
    from flask import current_app

    from voice.jobs import run_worker

    app = current_app._get_current_object()
    run_worker(app, threads or int(app.config["VOICE_WORKER_THREADS"]))
