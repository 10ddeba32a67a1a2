"""Wire shapes of memberships and invites (Cal.com v1 `validations/membership.ts`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from bookable.core.schemas import DbId, StrictInput, WireDateTime, WireModel, refuse_null
from bookable.models import Membership, MembershipRole
from bookable.teams.schemas import team_json


class MembershipCreate(StrictInput):
    team_id: DbId
    user_id: DbId
    role: MembershipRole = MembershipRole.MEMBER
    accepted: bool = False
    disable_impersonation: bool = False


class MembershipUpdate(StrictInput):
    accepted: bool | None = None
    role: MembershipRole | None = None
    disable_impersonation: bool | None = None

    _not_null = refuse_null("accepted", "role", "disable_impersonation")


class MembershipOut(WireModel):
    id: int
    team_id: int
    user_id: int
    accepted: bool
    role: MembershipRole
    disable_impersonation: bool
    created_at: WireDateTime
    updated_at: WireDateTime


UsernameOrEmail = Annotated[str, Field(min_length=1, max_length=320)]


class InviteCreate(StrictInput):
    team_id: DbId
    username_or_email: UsernameOrEmail | Annotated[list[UsernameOrEmail], Field(min_length=1)]
    role: MembershipRole = MembershipRole.MEMBER
    language: Annotated[str, Field(max_length=16)] | None = None


def membership_json(membership: Membership, include_team: bool = False) -> dict[str, Any]:
    """A membership as the API answers it; with its team for `?include=team`."""
    data = MembershipOut.model_validate(membership).model_dump(mode="json", by_alias=True)
    if include_team:
        data["team"] = team_json(membership.team)
    return data
