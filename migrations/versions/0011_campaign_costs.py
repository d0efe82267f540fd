"""Campaign costs: what each campaign's calls have cost so far, per currency, kept as calls are settled; and when a
finished campaign's webhook events were queued (the worker queues a cancelled campaign's).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "campaign_costs",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), primary_key=True),
        sa.Column("currency", sa.String(8), primary_key=True),
        sa.Column("amount", sa.Numeric(14, 4), nullable=False),
    )
    op.execute("INSERT INTO campaign_costs (campaign_id, currency, amount) SELECT campaign_id, currency, sum(amount) "
               "FROM campaign_attempts WHERE amount IS NOT NULL AND currency IS NOT NULL GROUP BY campaign_id, currency")
    op.drop_index("ix_campaign_attempts_cost", "campaign_attempts")  # the costs were read from it alone
    op.add_column("campaigns", sa.Column("finish_announced_at", sa.DateTime()))
    op.create_index("ix_campaigns_announced", "campaigns", ["status", "finish_announced_at"])
    # Campaigns that finished before this revision had their events queued as they finished.
    op.execute("UPDATE campaigns SET finish_announced_at = finished_at WHERE status IN ('completed', 'cancelled')")


def downgrade():
    op.drop_index("ix_campaigns_announced", "campaigns")
    with op.batch_alter_table("campaigns") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("finish_announced_at")
    op.create_index("ix_campaign_attempts_cost", "campaign_attempts", ["campaign_id", "currency", "amount"])
    op.drop_table("campaign_costs")
