"""Call endings: each call's final notification noted for the worker's work after the call (webhooks, recordings).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "call_endings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=False),
    )


def downgrade():
    op.drop_table("call_endings")
