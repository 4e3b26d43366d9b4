"""Open a store from a location string: a file path (embedded, the default) or a Bolt/Neo4j URI."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from graph_store.base import GraphStore
from graph_store.errors import InvalidInputError, StoreUnavailableError

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

DEFAULT_STORE = ".graphrouter/graph.db"
NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")


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


def default_location() -> str:
    """``GRAPHROUTER_STORE`` if set, else ``NEO4J_URI`` if set, else the embedded file ``.graphrouter/graph.db``."""
    return os.environ.get("GRAPHROUTER_STORE") or os.environ.get("NEO4J_URI") or DEFAULT_STORE


def open_store(location: str | os.PathLike[str] | None = None, create: bool = True) -> GraphStore:
    """Open the store at ``location`` (see :func:`default_location` for the default).

    A ``bolt://`` or ``neo4j://`` URI opens the Neo4j backend (see :meth:`Neo4jStore.from_env
    <graph_store.backends.neo4j_store.Neo4jStore.from_env>`: ``bolt://user:password@host:port/database?timeout=2``,
    any part but the host optional, the rest from ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE`` and
    ``GRAPHROUTER_STORE_TIMEOUT``); anything else is the path of an embedded store file
    (``embedded://`` prefix optional), created on first use unless ``create`` is false (readers that need data:
    a missing file is then a :class:`StoreUnavailableError` rather than a new empty store left behind).
    """
    loc = str(location) if location is not None else default_location()
    if not loc.strip():
        raise InvalidInputError("store location is empty; give a file path or a bolt:// / neo4j:// URI")
    if loc.startswith(NEO4J_SCHEMES):
        from graph_store.backends.neo4j_store import Neo4jStore

        return Neo4jStore.from_env(uri=loc)
    if "://" in loc and not loc.startswith("embedded://"):
        raise InvalidInputError(
            f"unsupported store location {redact(loc)!r}: use a file path, embedded://PATH, bolt://HOST:PORT or neo4j://…"
        )
    from graph_store.backends.embedded import EmbeddedStore

    path = Path(loc.removeprefix("embedded://"))
    if not create and not path.exists():
        raise StoreUnavailableError(
            f"no store at {path}; import data first (graphrouter import dcrouter, or make demo)"
        )
    return EmbeddedStore(path)
