"""outbound emails keep the facts of their message; the dispatcher renders it

Rendering a booking's emails was ~40 % of the request's CPU. The change's transaction now stores
what the message says (``facts``, JSON) and leaves ``message`` NULL; the email dispatcher
renders it before the first attempt and stores it, so a retry sends the same bytes.

Downgrade renders the messages still unrendered (the older code sends ``message`` as stored)
before dropping ``facts``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    # Batch: SQLite cannot make a column nullable in place (the table is copied).
    with op.batch_alter_table("outbound_emails") as batch:
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=True))
        batch.alter_column("message", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    from bookable.notifications.messages import render_stored

    bind = op.get_bind()
    emails = sa.table(
        "outbound_emails",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("message_id", sa.String()),
        sa.column("facts", sa.JSON()),
        sa.column("message", sa.Text()),
    )
    unrendered = bind.execute(
        sa.select(emails.c.id, emails.c.kind, emails.c.message_id, emails.c.facts).where(
            emails.c.message.is_(None)
        )
    ).all()
    for row in unrendered:
        facts = row.facts if isinstance(row.facts, dict) else json.loads(row.facts)
        message = render_stored(facts, row.kind, row.message_id).message
        bind.execute(sa.update(emails).where(emails.c.id == row.id).values(message=message))
    with op.batch_alter_table("outbound_emails") as batch:
        batch.alter_column("message", existing_type=sa.Text(), nullable=False)
        batch.drop_column("facts")
