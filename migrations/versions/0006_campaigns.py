"""Outbound campaigns: campaigns, their contacts and attempts, and the do-not-call list.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64)),
        sa.Column("window", sa.JSON),
        sa.Column("timezone", sa.String(64)),
        sa.Column("retry", sa.JSON, nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("not_after", sa.DateTime()),
        sa.Column("max_concurrent", sa.Integer, nullable=False),
        sa.Column("per_minute", sa.Integer, nullable=False),
        sa.Column("budget_amount", sa.Numeric(14, 4)),
        sa.Column("budget_currency", sa.String(8)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.String(16)),
        sa.Column("next_dial_at", sa.DateTime()),
        sa.Column("contacts_total", sa.Integer, nullable=False),
        sa.Column("var_names", sa.JSON),
        sa.Column("answer_keys", sa.JSON),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
    )
    op.create_index("ix_campaigns_owner", "campaigns", ["owner"])
    op.create_index("ix_campaigns_status", "campaigns", ["status"])
    op.create_table(
        "campaign_contacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("vars", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("planned", sa.Integer, nullable=False),
        sa.Column("transients", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime()),
        sa.Column("last_hangup_cause", sa.String(64)),
        sa.Column("last_state", sa.String(64)),
        sa.Column("duration", sa.Integer),
        sa.Column("answers", sa.JSON),
        sa.Column("updated_at", sa.DateTime()),
        sa.UniqueConstraint("campaign_id", "phone", name="uq_campaign_contacts_phone"),
    )
    op.create_index("ix_campaign_contacts_due", "campaign_contacts", ["campaign_id", "status", "next_attempt_at"])
    op.create_index("ix_campaign_contacts_list", "campaign_contacts", ["campaign_id", "id"])
    op.create_index("ix_campaign_contacts_status", "campaign_contacts", ["campaign_id", "status", "id"])
    op.create_table(
        "campaign_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("campaign_contacts.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("dialled_at", sa.DateTime()),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("session_id", sa.String(128)),
        sa.Column("state", sa.String(64)),
        sa.Column("hangup_cause", sa.String(64)),
        sa.Column("duration", sa.Integer),
        sa.Column("amount", sa.Numeric(14, 4)),
        sa.Column("currency", sa.String(8)),
        sa.Column("answers", sa.JSON),
        sa.Column("outcome", sa.String(16)),
        sa.Column("error", sa.String(255)),
    )
    op.create_index("ix_campaign_attempts_cost", "campaign_attempts", ["campaign_id", "currency", "amount"])
    op.create_index("ix_campaign_attempts_contact_id", "campaign_attempts", ["contact_id"])
    op.create_index("ix_campaign_attempts_status", "campaign_attempts", ["status"])
    op.create_index("ix_campaign_attempts_claimed_at", "campaign_attempts", ["claimed_at"])
    op.create_index("ix_campaign_attempts_session_id", "campaign_attempts", ["session_id"])
    op.create_table(
        "do_not_call",
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("added_by", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),
    )


def downgrade():
    op.drop_table("do_not_call")
    op.drop_table("campaign_attempts")
    op.drop_table("campaign_contacts")
    op.drop_table("campaigns")
