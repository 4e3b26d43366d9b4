"""Store locations: the time bound, redacting a password before a location is shown, and parsing a Bolt URI.

Shared by the factory (which opens a store from a location) and the Neo4j backend (which reads its credentials
and time bound from it), so neither imports the other for it.
"""

from __future__ import annotations

import math
import os
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from graph_store.errors import InvalidInputError

REDACTED = "***"
# The store's time bound in seconds (``?timeout=`` in the location, else GRAPHROUTER_STORE_TIMEOUT, else this):
# a driver made by Neo4jStore.from_env() gives up connecting, acquiring a pooled connection, and retrying a managed
# transaction (deadlocks, leader switches, an unreachable server) after this long; the driver's defaults (30 s
# to a minute) are long for a service that should answer "store unavailable" promptly. After an outage error
# the store also fails fast (without contacting the server) for this long, so that one request making several
# store calls waits for one bound, not one per call; ping() always tries the server.
DEFAULT_TIMEOUT_S = 2.0
MAX_TIMEOUT_S = 600.0
TIMEOUT_ENV = "GRAPHROUTER_STORE_TIMEOUT"


def redact(location: str | os.PathLike[str]) -> str:
    """``location`` with the password of its URI userinfo replaced by ``***`` (``bolt://bob:***@host:7687/db``).

    Use it wherever a store location is shown: reprs, error messages, logs, API answers. Anything without a
    ``user:password@`` part (a file path, ``bolt://host``) comes back unchanged.
    """
    loc = str(location)
    scheme, sep, rest = loc.partition("://")
    if not sep:
        return loc
    # the userinfo ends at the last "@": a password may hold unescaped "/", "?", "#" or "@" (over-redacting a
    # path or query that holds an "@" is harmless; showing part of a password is not)
    userinfo, at, hostport = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return loc
    return f"{scheme}://{user}:{REDACTED}@{hostport}"


def store_timeout(value: object) -> float:
    """A store time bound in seconds: a number (or numeric string) in (0, MAX_TIMEOUT_S]."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not 0 < seconds <= MAX_TIMEOUT_S:  # also refuses NaN
        raise InvalidInputError(
            f"the store timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}] (location ?timeout= or "
            f"{TIMEOUT_ENV}), got {value!r}"
        )
    return seconds


def parse_bolt_location(location: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    """``scheme://user:password@host:port/database?timeout=S&…`` → (driver URI, user, password, database,
    timeout). The driver URI keeps only scheme, host, port and any other query parameters (routing context)."""
    scheme, _, rest = location.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")  # as in redact()
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user, password = unquote(name) or None, (unquote(secret) if colon else None)
    parts = urlsplit(f"{scheme}://{hostpart}")
    database = unquote(parts.path.strip("/")) or None
    params = parse_qsl(parts.query, keep_blank_values=True)
    timeout = next((v for k, v in reversed(params) if k == "timeout"), None)
    query = urlencode([(k, v) for k, v in params if k != "timeout"])
    return f"{scheme}://{parts.netloc}{'?' + query if query else ''}", user, password, database, timeout
