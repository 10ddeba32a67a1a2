"""bookings lifecycle references payments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:26:26.779690
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookable.models.base import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "booking_references",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("uid", sa.String(length=255), nullable=False),
        sa.Column("meeting_id", sa.String(length=255), nullable=True),
        sa.Column("third_party_recurring_event_id", sa.String(length=255), nullable=True),
        sa.Column("meeting_password", sa.String(length=255), nullable=True),
        sa.Column("meeting_url", sa.Text(), nullable=True),
        sa.Column("external_calendar_id", sa.String(length=255), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=True),
        sa.Column("credential_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_booking_references_booking_id_bookings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_references")),
    )
    with op.batch_alter_table("booking_references", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_references_booking_id"), ["booking_id"], unique=False
        )

    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("fee", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("refunded", sa.Boolean(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("payment_option", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_payments_booking_id_bookings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("uid", name=op.f("uq_payments_uid")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_booking_id"), ["booking_id"], unique=False)

    with op.batch_alter_table("attendees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_number", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("no_show", sa.Boolean(), nullable=True))

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_primary_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("custom_inputs", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("responses", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("blocked_start", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("blocked_end", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("location", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("paid", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("destination_calendar_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cancellation_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rejection_reason", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("dynamic_event_slug_ref", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("dynamic_group_slug_ref", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(sa.Column("rescheduled", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("from_reschedule", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("recurring_event_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("sms_reminder_number", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("is_recorded", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("ical_uid", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("ical_sequence", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rating_feedback", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("no_show_host", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("cancelled_by", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("rescheduled_by", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("creation_source", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_bookings_recurring_event_id", ["recurring_event_id"], unique=False
        )
        batch_op.create_index("ix_bookings_start_time_id", ["start_time", "id"], unique=False)
        batch_op.drop_index("ix_bookings_user_id_start_time")
        batch_op.create_index(
            "ix_bookings_user_id_start_time", ["user_id", "start_time", "id"], unique=False
        )

    op.execute("UPDATE bookings SET blocked_start = start_time, blocked_end = end_time")
    # Never NULL: tstzrange(NULL, NULL) would be an endless range that blocks everything.
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.alter_column("blocked_start", existing_type=UTCDateTime(), nullable=False)
        batch_op.alter_column("blocked_end", existing_type=UTCDateTime(), nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        # No two accepted bookings of one host may overlap, buffers included: the database
        # itself refuses the second, whatever the number of server processes (SQLite instead
        # serialises writers, see core/db.py).
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE bookings ADD CONSTRAINT ex_bookings_host_overlap EXCLUDE USING gist "
            "(user_id WITH =, tstzrange(blocked_start, blocked_end, '[)') WITH &&) "
            "WHERE (status = 'ACCEPTED' AND user_id IS NOT NULL)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bookings DROP CONSTRAINT IF EXISTS ex_bookings_host_overlap")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_start_time_id")
        batch_op.drop_index("ix_bookings_user_id_start_time")
        batch_op.create_index(
            "ix_bookings_user_id_start_time", ["user_id", "start_time"], unique=False
        )
        batch_op.drop_index("ix_bookings_recurring_event_id")
        batch_op.drop_column("creation_source")
        batch_op.drop_column("rescheduled_by")
        batch_op.drop_column("cancelled_by")
        batch_op.drop_column("no_show_host")
        batch_op.drop_column("rating_feedback")
        batch_op.drop_column("rating")
        batch_op.drop_column("ical_sequence")
        batch_op.drop_column("ical_uid")
        batch_op.drop_column("is_recorded")
        batch_op.drop_column("metadata")
        batch_op.drop_column("sms_reminder_number")
        batch_op.drop_column("recurring_event_id")
        batch_op.drop_column("from_reschedule")
        batch_op.drop_column("rescheduled")
        batch_op.drop_column("dynamic_group_slug_ref")
        batch_op.drop_column("dynamic_event_slug_ref")
        batch_op.drop_column("rejection_reason")
        batch_op.drop_column("cancellation_reason")
        batch_op.drop_column("destination_calendar_id")
        batch_op.drop_column("paid")
        batch_op.drop_column("location")
        batch_op.drop_column("blocked_end")
        batch_op.drop_column("blocked_start")
        batch_op.drop_column("responses")
        batch_op.drop_column("custom_inputs")
        batch_op.drop_column("user_primary_email")

    with op.batch_alter_table("attendees", schema=None) as batch_op:
        batch_op.drop_column("no_show")
        batch_op.drop_column("phone_number")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_booking_id"))

    op.drop_table("payments")
    with op.batch_alter_table("booking_references", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_references_booking_id"))

    op.drop_table("booking_references")
