"""Wire shapes of event-type custom inputs (Cal.com v1 `validations/event-type-custom-input.ts`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bookable.core.schemas import MAX_DB_INT, StrictInput, WireModel, refuse_null

CustomInputType = Literal["TEXT", "TEXTLONG", "NUMBER", "BOOL", "RADIO", "PHONE"]


Text = str
Label = Annotated[str, Field(max_length=255)]
EventTypeId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]


class CustomInputOption(BaseModel):
    """One choice of a RADIO input. Cal.com drops unknown keys here (a non-strict zod object)."""

    model_config = ConfigDict(extra="ignore")

    label: Text
    type: Text


class CustomInputCreate(StrictInput):
    event_type_id: EventTypeId
    label: Label
    type: CustomInputType
    required: bool
    options: list[CustomInputOption] | None = None
    placeholder: Text = ""


class CustomInputUpdate(StrictInput):
    event_type_id: EventTypeId | None = None
    label: Label | None = None
    type: CustomInputType | None = None
    required: bool | None = None
    options: list[CustomInputOption] | None = None
    placeholder: Text | None = None

    _not_null = refuse_null("event_type_id", "label", "type", "required", "placeholder")


class CustomInputOut(WireModel):
    id: int
    event_type_id: int
    label: str
    type: str
    options: list[dict[str, Any]] | None
    required: bool
    placeholder: str
