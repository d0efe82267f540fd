"""The browser or app client a call came from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("client_name", sa.String(64)))
    op.create_index("ix_calls_client_name", "calls", ["client_name"])


def downgrade():
    raise RuntimeError("0003 holds which client placed recorded calls; it is never undone.")
