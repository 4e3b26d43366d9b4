"""The field types of request bodies, strict where they enter (see :mod:`api.models`): texts, names, query ids,
prices, costs and scenarios, each with a JSON Schema that says the same as its validation."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from graph_store.changes import utc_second
from graph_store.errors import InvalidInputError
from graph_store.schema import MAX_COST, MAX_NAME_CHARS, MAX_PRICE, MAX_QUERY_ID_CHARS, NAME_RULE, nfc_problem
from graphrouter.model_names import reserved_name
from graphrouter.rewards import SCENARIO_ALIASES, SCENARIOS


class Strict(BaseModel):
    """Unknown fields are refused (a typo such as ``top_k`` gets a 422 naming it, not silently ignored), and JSON
    types are taken as sent: no string-to-number or bool-to-int coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


# graph_store's character classes, spelled as regex escapes (the same text serves Python's re and the OpenAPI)
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"  # Unicode Cc, Zl, Zp
# the characters str.strip() removes that are not control characters (Python's whitespace, less Cc/Zl/Zp)
_SPACE = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
# the characters str.strip() removes: _SPACE and the control characters \t\n\v\f\r, \x1c-\x1f, \x85
_ANY_SPACE = _SPACE + r"\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029"
TEXT_PATTERN = r"^[^\x00]*$"
QUERY_PATTERN = rf"^[^\x00]*[^\x00{_ANY_SPACE}][^\x00]*$"
NAME_PATTERN = rf"^[^{_CONTROL}{_SPACE}](?:[^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?$"
QUERY_ID_PATTERN = rf"^[^{_CONTROL}]+$"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_CHAR = re.compile(f"[{_CONTROL}]")


def _unicode(value: object) -> object:
    """Refuses a lone surrogate (a ``"\\ud800"`` escape in JSON) or a NUL, before any other check of the string."""
    if isinstance(value, str):
        bad = _LONE_SURROGATE.search(value)
        if bad:
            raise ValueError(
                f"must be valid Unicode: it holds a lone surrogate {bad.group()!r} at character {bad.start()}"
            )
        if "\x00" in value:
            raise ValueError(f"must not contain NUL characters (at character {value.index(chr(0))})")
    return value


def _not_blank(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _name(value: object) -> object:
    """graph_store's rule for names, with its words, before the length check (the pattern says the same)."""
    if isinstance(value, str):
        bad = _CONTROL_CHAR.search(value)
        if bad:
            raise ValueError(
                f"holds the control character {bad.group()!r} at character {bad.start()}; allowed: {NAME_RULE}"
            )
        if value and value != value.strip():
            raise ValueError(f"has leading or trailing whitespace; allowed: {NAME_RULE}")
    return value


def _query_id(value: object) -> object:
    if isinstance(value, str):
        bad = _CONTROL_CHAR.search(value)
        if bad:
            raise ValueError(f"holds the control character {bad.group()!r} at character {bad.start()}")
    return value


# A field's constraints go first in its Annotated (pydantic then checks them as a string's, after the validators,
# which run last-listed first); the pattern goes only into the JSON Schema: the validators above check the same
# rule with clearer messages.
def _utc(value: str) -> str:
    try:
        return utc_second(value)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


def text(max_length: int | None = None) -> Any:
    """The type of a text field: valid Unicode, no NUL, at most ``max_length`` characters."""
    return Annotated[
        str, Field(max_length=max_length, json_schema_extra={"pattern": TEXT_PATTERN}), BeforeValidator(_unicode)
    ]


QueryText = Annotated[
    str,
    Field(min_length=1, json_schema_extra={"pattern": QUERY_PATTERN}),
    BeforeValidator(_not_blank),
    BeforeValidator(_unicode),
]
"""A query's text: valid Unicode, no NUL, at least one non-whitespace character (its length limit is a setting)."""
Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_CHARS, json_schema_extra={"pattern": NAME_PATTERN}),
    BeforeValidator(_name),
    BeforeValidator(_not_blank),
    BeforeValidator(_unicode),
]
"""An LLM, agent or task name (or a reference to one): ``NAME_RULE``."""


def _nfc(value: str) -> str:
    if why := nfc_problem(value):
        raise ValueError(why)
    return value


def _not_the_router(value: str) -> str:
    if why := reserved_name(value):
        raise ValueError(why)
    return value


NewName = Annotated[Name, AfterValidator(_nfc)]
"""A registration's name (a task's; :data:`LLMName`): :data:`Name`, in Unicode NFC form, as the store writes new names
(one name, one spelling). A name an earlier version stored otherwise is refused here too, even registered again with
the same data; it is still a :data:`Name` to refer to (paths, outcomes, routes) and an import can update it."""
LLMName = Annotated[NewName, AfterValidator(_not_the_router)]
"""A new LLM's or agent's name: :data:`NewName`, not one the proxy reads as a request to route, and not one ending in
``/probes`` (its GET would read as another's probe set)."""
QueryId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_QUERY_ID_CHARS, json_schema_extra={"pattern": QUERY_ID_PATTERN}),
    BeforeValidator(_query_id),
    BeforeValidator(_unicode),
]
"""A stored query's id: no control characters or line breaks, at most ``MAX_QUERY_ID_CHARS``."""
Description = text(20_000)
ShortText = text(200)
Timestamp = Annotated[
    str | None,
    Field(max_length=64, json_schema_extra={"format": "date-time"}),
    BeforeValidator(lambda v: None if v == "" else v),
    AfterValidator(lambda v: None if v is None else _utc(v)),
]
"""An ISO-8601 time (without a zone: UTC), stored as UTC to the second (``graph_store.changes.utc_second``); empty or
null: not given."""
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Cost = Annotated[float, Field(ge=0, le=MAX_COST, allow_inf_nan=False)]
Scenario = Literal[tuple([*SCENARIOS, *SCENARIO_ALIASES])]  # type: ignore[valid-type]
