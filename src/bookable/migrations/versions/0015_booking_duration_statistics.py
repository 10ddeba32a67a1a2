"""PostgreSQL statistics of a booking's duration, so the busy read keeps one plan

The busy read (POST /bookings, GET /slots) reads a host's bookings older than the longest
booking allowed through ``ix_bookings_user_id_longer_than_allowed``, whose rows satisfy
``end_time - start_time > interval '31 days'``. PostgreSQL had no statistics of that
expression and took a third of the bookings to satisfy it: a plan made for any parameters
(the generic plan a prepared statement keeps after its fifth run) looked ~5 times dearer than
one made for the parameters at hand, so it planned the statement again on every run (~0.6 ms
of the database's CPU a booking, more than running it). With these statistics ANALYZE knows
that nearly no booking lasts that long, and the generic plan is kept. They are built by the
table's next ANALYZE (autovacuum's, or an operator's): not here, where an ANALYZE of an empty
table (a new database) would leave PostgreSQL sure the table is empty until the next one.

Expression statistics exist from PostgreSQL 14 on; older servers keep planning every run.
SQLite has nothing of the kind (and plans every statement anyway).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

# The expression must be written as the busy read's clause (`models.bookings.LongerThanAllowed`).
STATISTICS = "st_bookings_duration"


def _expression_statistics() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and (bind.dialect.server_version_info or ()) >= (14,)


def upgrade() -> None:
    if _expression_statistics():
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} ON (end_time - start_time) FROM bookings"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
