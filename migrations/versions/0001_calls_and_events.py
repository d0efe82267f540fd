"""Calls and their events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("direction", sa.String(16)),
        sa.Column("caller_number", sa.String(128)),
        sa.Column("destination_number", sa.String(128)),
        sa.Column("state", sa.String(64)),
        sa.Column("status", sa.String(64)),
        sa.Column("started_at", sa.DateTime()),
        sa.Column("answered_at", sa.DateTime()),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("duration_seconds", sa.Integer()),
        sa.Column("amount", sa.Numeric(14, 4)),
        sa.Column("currency_code", sa.String(3)),
        sa.Column("hangup_cause", sa.String(64)),
        sa.Column("last_digits", sa.String(64)),
        sa.Column("recording_urls", sa.JSON()),
        sa.Column("requested_by", sa.String(64)),
        sa.Column("queue_status", sa.String(64)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("session_id", name="uq_calls_session_id"),
    )
    op.create_index("ix_calls_caller_number", "calls", ["caller_number"])
    op.create_index("ix_calls_destination_number", "calls", ["destination_number"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_state", "calls", ["state"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.Integer(), sa.ForeignKey("calls.id", name="fk_events_call_id"), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON()),
        sa.Column("problems", sa.JSON()),
        sa.UniqueConstraint("call_id", "fingerprint", name="uq_events_call_fingerprint"),
    )


def downgrade():
    raise RuntimeError("0001 holds recorded calls and events; it is never undone (back up and drop by hand).")
