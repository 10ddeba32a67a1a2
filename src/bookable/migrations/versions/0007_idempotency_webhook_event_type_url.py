"""idempotency keys; one subscriber URL per event type

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookable.models.base import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("response_content_type", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_idempotency_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    # Earlier versions let one URL be attached twice to an event type: keep the oldest of each.
    op.execute(
        """
        DELETE FROM webhooks WHERE event_type_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM webhooks older
             WHERE older.event_type_id = webhooks.event_type_id
               AND older.subscriber_url = webhooks.subscriber_url
               AND (older.created_at < webhooks.created_at
                    OR (older.created_at = webhooks.created_at AND older.id < webhooks.id)))
        """
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_webhooks_event_type_id_subscriber_url", ["event_type_id", "subscriber_url"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhooks_event_type_id_subscriber_url", type_="unique")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
