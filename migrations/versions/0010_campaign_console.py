"""The console's campaign page: a campaign's attempts in time order, so its attempts-over-time chart counts them from
one index (status and outcome in it: withdrawn and answered attempts counted without reading the table).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_campaign_attempts_time", "campaign_attempts", ["campaign_id", "claimed_at", "status", "outcome"])


def downgrade():
    op.drop_index("ix_campaign_attempts_time", "campaign_attempts")
