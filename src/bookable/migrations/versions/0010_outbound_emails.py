"""outbound emails (the email outbox)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookable.models.base import BigId, UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_emails",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_emails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbound_emails_message_id")),
    )
    op.create_index(
        "ix_outbound_emails_status_next_attempt_at",
        "outbound_emails",
        ["status", "next_attempt_at"],
        unique=False,
    )
    for column in ("booking_id", "user_id", "created_at"):
        op.create_index(
            op.f(f"ix_outbound_emails_{column}"), "outbound_emails", [column], unique=False
        )


def downgrade() -> None:
    for column in ("created_at", "user_id", "booking_id"):
        op.drop_index(op.f(f"ix_outbound_emails_{column}"), table_name="outbound_emails")
    op.drop_index("ix_outbound_emails_status_next_attempt_at", table_name="outbound_emails")
    op.drop_table("outbound_emails")
