"""Transfers, queues and clientRequestId on calls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("client_request_id", sa.String(64)),
    ("transferred_to", sa.String(128)),
    ("transfer_state", sa.String(64)),
    ("transfer_hangup_cause", sa.String(64)),
    ("dequeued_to", sa.String(128)),
    ("dequeued_at", sa.DateTime()),
    ("queue_seconds", sa.Integer()),
    ("queue_name", sa.String(64)),
)


def upgrade():
    # Only new, empty columns: every call and event recorded before stays as it was.
    with op.batch_alter_table("calls") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind))
    op.create_index("ix_calls_client_request_id", "calls", ["client_request_id"])


def downgrade():
    raise RuntimeError("0002 holds transfers, queues and clientRequestIds of recorded calls; it is never undone.")
