"""indexes for the lookups a booking makes: attendees by lower(email), a host's recent emails

Every lookup of an attendee by email is case-insensitive (``lower(email) = ...``: slots and
booking checks for a host who attends, booking access, listing by attendee), and the plain
index on ``email`` could not answer it: each one read every attendee.

Every booking counts its host's emails of the last hour (the hourly limit): with an index on
``user_id`` alone that read every email the host's bookings ever made; ``(user_id,
created_at)`` reads the last hour's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_attendees_email", table_name="attendees")
    op.create_index("ix_attendees_lower_email", "attendees", [sa.text("lower(email)")])
    op.drop_index("ix_outbound_emails_user_id", table_name="outbound_emails")
    op.create_index(
        "ix_outbound_emails_user_id_created_at", "outbound_emails", ["user_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbound_emails_user_id_created_at", table_name="outbound_emails")
    op.create_index("ix_outbound_emails_user_id", "outbound_emails", ["user_id"])
    op.drop_index("ix_attendees_lower_email", table_name="attendees")
    op.create_index("ix_attendees_email", "attendees", ["email"])
