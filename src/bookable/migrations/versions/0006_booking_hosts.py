"""booking hosts: every host a booking occupies, with the overlap constraint moved onto them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:00:00

A collective team booking occupies every host, so "no two accepted bookings of one host
overlap" must be checked per (booking, host), not per booking. Triggers keep the rows in step
with their booking whatever code writes it: the organiser's row is added on insert, and status
and blocked range are copied on every update.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookable.models.base import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

STATUSES = ("ACCEPTED", "PENDING", "CANCELLED", "REJECTED", "AWAITING_HOST")

_PG_STATEMENTS = (
    """
CREATE OR REPLACE FUNCTION bookable_booking_hosts_on_insert() RETURNS trigger AS $$
BEGIN
    IF NEW.user_id IS NOT NULL THEN
        INSERT INTO booking_hosts
            (booking_id, user_id, organizer, status, blocked_start, blocked_end)
        VALUES (NEW.id, NEW.user_id, TRUE, NEW.status, NEW.blocked_start, NEW.blocked_end)
        ON CONFLICT (booking_id, user_id) DO UPDATE SET organizer = TRUE;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION bookable_booking_hosts_on_update() RETURNS trigger AS $$
BEGIN
    IF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
        DELETE FROM booking_hosts WHERE booking_id = NEW.id AND user_id = OLD.user_id;
        IF NEW.user_id IS NOT NULL THEN
            INSERT INTO booking_hosts
                (booking_id, user_id, organizer, status, blocked_start, blocked_end)
            VALUES (NEW.id, NEW.user_id, TRUE, NEW.status, NEW.blocked_start, NEW.blocked_end)
            ON CONFLICT (booking_id, user_id) DO UPDATE SET organizer = TRUE;
        END IF;
    END IF;
    UPDATE booking_hosts
       SET status = NEW.status, blocked_start = NEW.blocked_start, blocked_end = NEW.blocked_end
     WHERE booking_id = NEW.id;
    RETURN NULL;
END $$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER trg_bookings_hosts_insert AFTER INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookable_booking_hosts_on_insert()
""",
    """
CREATE TRIGGER trg_bookings_hosts_update
    AFTER UPDATE OF user_id, status, blocked_start, blocked_end ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookable_booking_hosts_on_update()
""",
)

_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER trg_bookings_hosts_insert AFTER INSERT ON bookings
    WHEN NEW.user_id IS NOT NULL
    BEGIN
        INSERT INTO booking_hosts
            (booking_id, user_id, organizer, status, blocked_start, blocked_end)
        VALUES (NEW.id, NEW.user_id, 1, NEW.status, NEW.blocked_start, NEW.blocked_end)
        ON CONFLICT (booking_id, user_id) DO UPDATE SET organizer = 1;
    END
    """,
    """
    CREATE TRIGGER trg_bookings_hosts_update
    AFTER UPDATE OF user_id, status, blocked_start, blocked_end ON bookings
    BEGIN
        DELETE FROM booking_hosts
         WHERE booking_id = NEW.id AND user_id = OLD.user_id
           AND NEW.user_id IS NOT OLD.user_id;
        INSERT INTO booking_hosts
            (booking_id, user_id, organizer, status, blocked_start, blocked_end)
        SELECT NEW.id, NEW.user_id, 1, NEW.status, NEW.blocked_start, NEW.blocked_end
         WHERE NEW.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id
        ON CONFLICT (booking_id, user_id) DO UPDATE SET organizer = 1;
        UPDATE booking_hosts
           SET status = NEW.status, blocked_start = NEW.blocked_start,
               blocked_end = NEW.blocked_end
         WHERE booking_id = NEW.id;
    END
    """,
)


def upgrade() -> None:
    op.create_table(
        "booking_hosts",
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("organizer", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="booking_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("blocked_start", UTCDateTime(), nullable=False),
        sa.Column("blocked_end", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_booking_hosts_booking_id_bookings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_booking_hosts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("booking_id", "user_id", name=op.f("pk_booking_hosts")),
    )
    op.create_index(
        "ix_booking_hosts_user_id_blocked_start",
        "booking_hosts",
        ["user_id", "blocked_start"],
        unique=False,
    )
    # Co-hosts (not organising) are few: found by this small index, not by walking a host's
    # every booking.
    op.create_index(
        "ix_booking_hosts_co_hosts",
        "booking_hosts",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("NOT organizer"),
        sqlite_where=sa.text("organizer = 0"),
    )
    op.execute(
        "INSERT INTO booking_hosts "
        "(booking_id, user_id, organizer, status, blocked_start, blocked_end) "
        "SELECT id, user_id, TRUE, status, blocked_start, blocked_end FROM bookings "
        "WHERE user_id IS NOT NULL"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bookings DROP CONSTRAINT IF EXISTS ex_bookings_host_overlap")
        op.execute(
            "ALTER TABLE booking_hosts ADD CONSTRAINT ex_booking_hosts_overlap EXCLUDE USING gist "
            "(user_id WITH =, tstzrange(blocked_start, blocked_end, '[)') WITH &&) "
            "WHERE (status = 'ACCEPTED')"
        )
        for statement in _PG_STATEMENTS:
            op.execute(statement)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_bookings_hosts_update ON bookings"
               if op.get_bind().dialect.name == "postgresql"
               else "DROP TRIGGER IF EXISTS trg_bookings_hosts_update")  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_bookings_hosts_insert ON bookings")
        op.execute("DROP FUNCTION IF EXISTS bookable_booking_hosts_on_update()")
        op.execute("DROP FUNCTION IF EXISTS bookable_booking_hosts_on_insert()")
        op.execute(
            "ALTER TABLE bookings ADD CONSTRAINT ex_bookings_host_overlap EXCLUDE USING gist "
            "(user_id WITH =, tstzrange(blocked_start, blocked_end, '[)') WITH &&) "
            "WHERE (status = 'ACCEPTED' AND user_id IS NOT NULL)"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_bookings_hosts_insert")
    op.drop_index("ix_booking_hosts_co_hosts", table_name="booking_hosts")
    op.drop_index("ix_booking_hosts_user_id_blocked_start", table_name="booking_hosts")
    op.drop_table("booking_hosts")
