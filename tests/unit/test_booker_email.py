"""`bookings.schemas.plain_ascii_email`, the booker's address without email-validator's full pass,
against pydantic's `EmailStr` (email-validator): whatever the shortcut accepts, `EmailStr`
accepts and normalises alike; and `Booker` with the shortcut gives every input the verdict, the
value and the error messages a `Booker` of plain `EmailStr` fields gives. Deterministic:
hypothesis runs derandomized."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, EmailStr, Field, TypeAdapter, ValidationError

from bookable.bookings.schemas import Booker, plain_ascii_email

EMAIL = TypeAdapter(EmailStr)


class ReferenceBooker(BaseModel):
    """`Booker` as it was: plain `EmailStr` fields."""

    name: str = Field(min_length=1, max_length=255)
    email: EmailStr
    location: str | None = None
    location_option: str | None = None
    guests: list[EmailStr] = Field(default_factory=list, max_length=30)
    notes: str | None = None
    phone_number: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


def verdict(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields).model_dump()
    except ValidationError as error:
        return error.errors(include_url=False)


ATEXT = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
# Label pieces that hit email-validator's domain rules: case, hyphens at the ends, "xn--" and
# "ab--", numeric TLDs, special-use names, long labels, IDNA.
LABELS = st.one_of(
    st.text(alphabet="aZ09-", min_size=1, max_size=6),
    st.sampled_from(
        [
            "com", "COM", "Example", "xn--bcher-kva", "ab--cd", "xn--", "-a", "a-", "1", "123",
            "localhost", "test", "invalid", "local", "onion", "arpa", "example", "in-addr",
            "a" * 63, "a" * 64, "b\u00fccher", "\u0130", "",
        ]
    ),
)  # fmt: skip
LOCALS = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=12),
    st.sampled_from(["postmaster", "Abuse", "SALES", "a" * 64, "a" * 65, "j\u00f6rg", '"q"']),
)
DOMAINS = st.lists(LABELS, min_size=1, max_size=5).map(".".join)
# Mostly valid: dot-atoms before the @-sign, host names after it, a TLD (often of letters).
ATOMS = st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=8), min_size=1, max_size=3)
HOST_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
TLD = st.one_of(st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True), LABELS)
HOSTS = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(HOST_LABEL, max_size=3), TLD
)
ADDRESSES = st.one_of(
    st.builds(lambda atoms, host: f"{'.'.join(atoms)}@{host}", ATOMS, HOSTS),
    st.builds(lambda atoms, host: f"{'.'.join(atoms)}@{host}", ATOMS, HOSTS),
    st.builds(lambda local, domain: f"{local}@{domain}", LOCALS, DOMAINS),
    # Around the address's 254 characters.
    st.builds(
        lambda local, n: f"{local}@{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * n}.com",
        LOCALS,
        st.integers(40, 80),
    ),
    st.text(alphabet=ATEXT + '.@ <>"\n\u00e9', max_size=30),
)


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(ADDRESSES)
@example("guest@example.com")
@example("Guest.Name+tag@Example.COM")
@example("Postmaster@example.com")
@example("a@localhost.localhost")
@example("a@b.123")
@example("a@xn--bcher-kva.example")
@example("a@ab--cd.com")
@example("a..b@example.com")
@example(".a@example.com")
@example("a@example.com.")
def test_a_plain_ascii_address_is_normalised_as_email_str_does(address: str) -> None:
    plain = plain_ascii_email(address)
    if plain is not None:
        assert EMAIL.validate_python(address) == plain


OTHERS = st.none() | st.integers() | st.binary(max_size=8)


@settings(derandomize=True, max_examples=500, deadline=None)
@given(ADDRESSES, st.lists(ADDRESSES, max_size=3), OTHERS)
@example("ann@example.com", ["g@example.com"], None)
def test_booker_gives_every_input_email_strs_verdict(
    address: str, guests: list[str], other: Any
) -> None:
    for email in (address, other):
        fields = {"name": "Ann", "email": email, "guests": guests}
        assert verdict(Booker, fields) == verdict(ReferenceBooker, fields)
