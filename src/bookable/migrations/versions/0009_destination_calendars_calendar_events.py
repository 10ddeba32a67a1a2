"""destination calendars, and calendar events (the calendar outbox)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookable.models.base import BigId, UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "destination_calendars",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("integration", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("primary_email", sa.String(length=320), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("event_type_id", sa.Integer(), nullable=True),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (event_type_id IS NULL)",
            name=op.f("ck_destination_calendars_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_destination_calendars_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_type_id"],
            ["event_types.id"],
            name=op.f("fk_destination_calendars_event_type_id_event_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_destination_calendars_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destination_calendars")),
        sa.UniqueConstraint("user_id", name=op.f("uq_destination_calendars_user_id")),
        sa.UniqueConstraint("event_type_id", name=op.f("uq_destination_calendars_event_type_id")),
    )
    op.create_index(
        op.f("ix_destination_calendars_credential_id"),
        "destination_calendars",
        ["credential_id"],
        unique=False,
    )
    op.create_table(
        "calendar_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(length=255), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("integration", sa.String(length=64), nullable=False),
        sa.Column("calendar_url", sa.Text(), nullable=False),
        sa.Column("wanted", sa.Boolean(), nullable=False),
        sa.Column("ics", sa.Text(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("event_url", sa.Text(), nullable=True),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_calendar_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name=op.f("fk_calendar_events_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_events")),
        sa.UniqueConstraint(
            "uid", "credential_id", "calendar_url", name="uq_calendar_events_uid_calendar"
        ),
    )
    op.create_index(
        "ix_calendar_events_status_next_attempt_at",
        "calendar_events",
        ["status", "next_attempt_at"],
        unique=False,
    )
    for column in ("booking_id", "user_id", "credential_id"):
        op.create_index(
            op.f(f"ix_calendar_events_{column}"), "calendar_events", [column], unique=False
        )


def downgrade() -> None:
    for column in ("credential_id", "user_id", "booking_id"):
        op.drop_index(op.f(f"ix_calendar_events_{column}"), table_name="calendar_events")
    op.drop_index("ix_calendar_events_status_next_attempt_at", table_name="calendar_events")
    op.drop_table("calendar_events")
    op.drop_index(
        op.f("ix_destination_calendars_credential_id"), table_name="destination_calendars"
    )
    op.drop_table("destination_calendars")
