"""Strict URL parameters, checked once for every route (after the API key).

FastAPI reads query and path values leniently: a repeated scalar (``?userId=1&userId=2``) silently
keeps the last value, and pydantic's lax integers accept ``1.0``, ``1_000`` or `` 1``. Here:

* a scalar query parameter given twice is a 400 naming it (list parameters may repeat);
* an integer in the URL is plain decimal digits (an optional ``-``), nothing else: ``1.0`` is
  "Expected integer, received float", as zod's ``.int()`` says;
* a bounded integer (``take``, ``page``, ...) beyond its bounds is refused before any conversion,
  however many digits it has. Unbounded ones (ids) are not: an id no row can have is "not found".
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from bookable.core.errors import BadRequest

_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class _UrlParam:
    name: str
    where: str  # "query" or "path"
    repeatable: bool
    integer: bool
    minimum: int | None  # the parameter's own inclusive bounds
    maximum: int | None


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and Optional[...]."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _describe(field: Any, where: str) -> _UrlParam:
    annotation = _unwrap(field.field_info.annotation)
    repeatable = get_origin(annotation) in (list, set, tuple, frozenset)
    if repeatable:
        annotation = _unwrap(get_args(annotation)[0])
    own = [m for m in field.field_info.metadata if isinstance(m, Ge | Gt | Le | Lt)]
    minimum: int | None = None
    maximum: int | None = None
    for bound in own:
        if isinstance(bound, Ge):
            minimum = int(bound.ge)  # type: ignore[call-overload]
        elif isinstance(bound, Gt):
            minimum = int(bound.gt) + 1  # type: ignore[call-overload]
        elif isinstance(bound, Le):
            maximum = int(bound.le)  # type: ignore[call-overload]
        else:
            maximum = int(bound.lt) - 1  # type: ignore[call-overload]
    return _UrlParam(field.alias, where, repeatable, annotation is int, minimum, maximum)


def _walk(dependant: Dependant) -> list[_UrlParam]:
    found = [_describe(f, "query") for f in dependant.query_params]
    found += [_describe(f, "path") for f in dependant.path_params]
    for sub in dependant.dependencies:
        found += [p for p in _walk(sub) if p not in found]
    return found


_ROUTE_PARAMS: dict[int, tuple[_UrlParam, ...]] = {}


def url_params(route: APIRoute) -> tuple[_UrlParam, ...]:
    cached = _ROUTE_PARAMS.get(id(route))
    if cached is None:
        cached = tuple(_walk(route.dependant))
        _ROUTE_PARAMS[id(route)] = cached
    return cached


def _check_integer(param: _UrlParam, text: str, location: str) -> None:
    if not _INTEGER_TEXT.fullmatch(text):
        received = "float" if _NUMBER_TEXT.fullmatch(text.strip()) else "nan"
        expected = "integer" if received == "float" else "number"
        raise BadRequest(f"invalid_type in '{location}': Expected {expected}, received {received}")
    if param.minimum is None and param.maximum is None:
        return
    # Compared without int() first: a thousands-digit number must not cost a conversion.
    negative = text.startswith("-")
    digits = text.lstrip("-").lstrip("0") or "0"
    value = None if len(digits) > 20 else int(digits) * (-1 if negative else 1)
    if param.minimum is not None and (
        (value is None and negative) or (value is not None and value < param.minimum)
    ):
        raise BadRequest(
            f"too_small in '{param.name}': Number must be greater than or equal to {param.minimum}"
        )
    if param.maximum is not None and (value is None or value > param.maximum):
        raise BadRequest(
            f"too_big in '{param.name}': Number must be less than or equal to {param.maximum}"
        )


async def check_url_parameters(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    query = request.query_params
    path_params = request.path_params
    for param in url_params(route):
        if param.where == "path":
            text = path_params.get(param.name)
            values = [text] if isinstance(text, str) else []
        else:
            values = query.getlist(param.name) if param.name in query else []
            if len(values) > 1 and not param.repeatable:
                raise BadRequest(
                    f"invalid_type in '{param.name}': Expected a single value, "
                    f"received {len(values)}"
                )
        if param.integer:
            for index, text in enumerate(values):
                location = f"{param.name},{index}" if param.repeatable else param.name
                _check_integer(param, text, location)
