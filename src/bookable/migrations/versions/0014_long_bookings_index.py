"""a partial index of bookings longer than 31 days, so busy reads can bound a host's bookings

A busy read (GET /slots, POST /bookings) asks for a host's bookings overlapping a span. On the
``(user_id, start_time)`` index that was a range with no lower end: every booking of the host
that started before the span's end, their whole history, read and filtered on every request.
A booking lasts at most 31 days (refused beyond since 0.1.0), so the read now starts 31 days
before the span; bookings longer than that, written before the limit, are read from this
index instead (nearly always empty).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_bookings_user_id_longer_than_allowed",
        "bookings",
        ["user_id", "start_time"],
        postgresql_where=sa.text("end_time - start_time > interval '31 days'"),
        sqlite_where=sa.text("julianday(end_time) - julianday(start_time) > 31"),
    )


def downgrade() -> None:
    op.drop_index("ix_bookings_user_id_longer_than_allowed", table_name="bookings")
