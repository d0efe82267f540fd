"""Recordings kept: a row per recording link of an ended call, and stored files left to remove after a prune.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("call_id", sa.Integer, sa.ForeignKey("calls.id"), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("source_url", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("first_try_at", sa.DateTime()),
        sa.Column("next_try_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_until", sa.DateTime()),
        sa.Column("error", sa.String(300)),
        sa.Column("stored_as", sa.String(300)),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("content_type", sa.String(100)),
        sa.Column("archived_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("call_id", "n", name="uq_recordings_call_n"),
    )
    op.create_index("ix_recordings_call_id", "recordings", ["call_id"])
    op.create_index("ix_recordings_due", "recordings", ["status", "next_try_at"])
    op.create_table(
        "recording_removals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stored_as", sa.String(300), nullable=False),
        sa.Column("noted_at", sa.DateTime(), nullable=False),
    )


def downgrade():
    op.drop_table("recording_removals")
    op.drop_index("ix_recordings_due", "recordings")
    op.drop_index("ix_recordings_call_id", "recordings")
    op.drop_table("recordings")
