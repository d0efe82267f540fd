"""The leg a Dial created (who answered, when, how long) and the caller's country code and carrier.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (
    ("caller_country_code", sa.String(64)),
    ("caller_carrier", sa.String(64)),
    ("dial_destination", sa.String(128)),
    ("dial_started_at", sa.DateTime()),
    ("dial_seconds", sa.Integer()),
)


def upgrade():
    # Only new, empty columns: every call recorded before stays as it was.
    with op.batch_alter_table("calls") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind))


def downgrade():
    raise RuntimeError("0005 holds the Dial legs and callers' carriers of recorded calls; it is never undone.")
