"""The OpenAPI document at /v1/openapi.json, made to describe what the server really answers.

FastAPI documents a 200 and a 422 for every operation; this server never answers 422 (validation
problems are Cal.com's 400s) and answers 400/401/403/404/409/413/429 from shared code paths
(``core/errors.py``, ``core/auth.py``, ``core/ratelimit.py``, ``core/middleware.py``,
``core/params.py``). Those statuses and their bodies are added here, once, from the shape of each
operation; each operation's 200 body is declared beside its route (``responses=ok(Model)``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, create_model

MESSAGE_SCHEMA = "ErrorMessage"
KEY_ERROR_SCHEMA = "ApiKeyError"
_WRITES = {"post", "put", "patch", "delete"}
_METHODS = {"get", "post", "put", "patch", "delete"}


class Envelope(BaseModel):
    """A documented response body: its keys exactly as given (``event_type``, ``api_keys``...)."""

    model_config = ConfigDict(extra="forbid")


def envelope(name: str, **fields: Any) -> type[BaseModel]:
    """A response envelope, e.g. ``envelope("UserResponse", user=UserOut)``. A value is a type
    (a required key) or ``(type, default)`` (a key that may be absent)."""
    spec = {key: v if isinstance(v, tuple) else (v, ...) for key, v in fields.items()}
    return create_model(name, __base__=Envelope, **spec)


class MessageResponse(Envelope):
    message: str


def ok(model: type[BaseModel] | Any, description: str = "Success") -> dict[int | str, Any]:
    """``responses=`` for a route whose handler builds its own body: documents ``model`` as the
    200 body without validating the body a second time."""
    return {200: {"model": model, "description": description}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MESSAGE = _ref(MESSAGE_SCHEMA)
_MESSAGE_OR_KEY_ERROR = {"anyOf": [_ref(MESSAGE_SCHEMA), _ref(KEY_ERROR_SCHEMA)]}
_RATE_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests per window."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Left in window."},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Window end, epoch ms."},
}


def _error_responses(method: str, operation: dict[str, Any], path: str) -> dict[str, Any]:
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    responses: dict[str, Any] = {}
    if params or has_body:
        responses["400"] = _json(
            _MESSAGE, "Invalid input: `<code> in '<field>': <message>` for each bad field"
        )
    responses["401"] = _json(
        _MESSAGE_OR_KEY_ERROR,
        'No key (`{"message": "No apiKey provided"}`), or an unknown or expired key '
        '(`{"error": ...}`, as Cal.com)',
    )
    responses["403"] = _json(
        _MESSAGE_OR_KEY_ERROR,
        'Not allowed for this caller; a locked user\'s key gets `{"error": ...}`',
    )
    if "{" in path or has_body or params:
        responses["404"] = _json(_MESSAGE, "An object named by the request does not exist")
    if method in _WRITES:
        responses["409"] = _json(_MESSAGE, "The change conflicts with existing data")
    if has_body:
        responses["413"] = _json(_MESSAGE, "Request body larger than BOOKABLE_MAX_BODY_BYTES")
    too_many = _json(_MESSAGE, "Rate limit exceeded (BOOKABLE_RATE_LIMIT per user)")
    too_many["headers"] = {
        **_RATE_HEADERS,
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."},
    }
    responses["429"] = too_many
    return responses


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A URL parameter is either absent or a value: ``anyOf [X, null]`` is just X."""
    members = schema.get("anyOf")
    if members and any(m.get("type") == "null" for m in members):
        kept = [m for m in members if m.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}
    return schema


# What the edge refuses in URLs (core/middleware.py): control characters anywhere in a path, and
# in query values all but TAB, LF and CR (a multi-line cancellation reason is fine).
_PATH_TEXT = "[^\\x00-\\x1f\\x7f]*"
_QUERY_TEXT = "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*"
# What `core/routing.py` refuses in JSON bodies: NUL (no database stores it).
_BODY_TEXT = "^[^\\x00]*$"


def _refuse_control_characters(schema: dict[str, Any], allowed: str) -> None:
    """Say in a string parameter's schema that the characters the edge refuses are refused."""
    if schema.get("type") != "string" or "enum" in schema or "const" in schema:
        return
    pattern = schema.get("pattern")
    if pattern is None:
        schema["pattern"] = f"^{allowed}$"
    elif pattern.startswith("^") and not pattern.endswith("$"):
        # A documented prefix (a date that may go on as an instant): the rest is text.
        schema["pattern"] = f"{pattern}{allowed}$"


def _tighten_parameter(param: dict[str, Any]) -> None:
    schema = _without_null(param.get("schema", {}))
    if param.get("in") == "query" and schema.get("type") == "array":
        param.setdefault("explode", True)
    allowed = _PATH_TEXT if param.get("in") == "path" else _QUERY_TEXT
    _refuse_control_characters(schema.get("items", schema), allowed)
    param["schema"] = schema


def _refuse_nul_in_text(node: Any) -> None:
    """Every free-text string of a body schema: NUL is refused (formats and patterns already
    exclude it)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(node):
            node["pattern"] = _BODY_TEXT
        for value in node.values():
            _refuse_nul_in_text(value)
    elif isinstance(node, list):
        for value in node:
            _refuse_nul_in_text(value)


_OPEN_OBJECT = {"type": "object", "additionalProperties": True}


def _is_inferred(schema: dict[str, Any]) -> bool:
    """FastAPI's schema of a `dict[str, Any]` (or a list of them) return annotation."""
    bare = {k: v for k, v in schema.items() if k != "title"}
    return bare == _OPEN_OBJECT or (
        bare.get("type") == "array" and _is_inferred(bare.get("items", {})) and len(bare) == 2
    )


def _clean_200(operation: dict[str, Any]) -> None:
    """A model declared with ``ok()`` is merged into FastAPI's schema of the handler's return
    annotation (an open object); the declared model alone is the truth."""
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    for media in content.values():
        schema = media.get("schema", {})
        if "$ref" in schema:
            media["schema"] = {"$ref": schema["$ref"]}
        elif "anyOf" in schema:
            kept = [m for m in schema["anyOf"] if not _is_inferred(m)]
            if kept and len(kept) < len(schema["anyOf"]):
                media["schema"] = kept[0] if len(kept) == 1 else {"anyOf": kept}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components[MESSAGE_SCHEMA] = {
        "type": "object",
        "title": MESSAGE_SCHEMA,
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }
    components[KEY_ERROR_SCHEMA] = {
        "type": "object",
        "title": KEY_ERROR_SCHEMA,
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    _refuse_nul_in_text(components)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            _refuse_nul_in_text(operation.get("requestBody", {}))
            for param in operation.get("parameters", []):
                _tighten_parameter(param)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            _clean_200(operation)
            if "200" in responses:
                responses["200"].setdefault("headers", dict(_RATE_HEADERS))
            for status, response in _error_responses(method, operation, path).items():
                responses.setdefault(status, response)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
