"""attendees indexed by lower(email)

Every lookup of an attendee by email is case-insensitive (``lower(email) = ...``: slots and
booking checks for a host who attends, booking access, listing by attendee), and the plain
index on ``email`` could not answer it: each one read every attendee.

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


def downgrade() -> None:
    op.drop_index("ix_attendees_lower_email", table_name="attendees")
    op.create_index("ix_attendees_email", "attendees", ["email"])
