"""Open a store from a location string: a file path (embedded, the default) or a Bolt/Neo4j URI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from graph_store.base import GraphStore
from graph_store.errors import InvalidInputError, StoreUnavailableError
from graph_store.location import parse_bolt_location, redact, store_timeout

DEFAULT_STORE = ".graphrouter/graph.db"
NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")
_MISTYPED_SCHEME = re.compile(r"(?i)(bolt|neo4j)(\+s|\+ssc)?(:|//)")  # bolt//host, bolt:host (not bolt/graph.db)


def check_location(location: str) -> None:
    """Refuse a store location that no open could use, without connecting: an empty one, another scheme, a Bolt URI
    without a host, with a port out of range, a bad ``timeout`` or (``bolt://``: no routing context) another query
    parameter, e.g. a misspelt ``timeout``. An :class:`InvalidInputError` saying what is wrong."""
    loc = str(location)
    if not loc.strip():
        raise InvalidInputError("store location is empty; give a file path or a bolt:// / neo4j:// URI")
    if loc.startswith(NEO4J_SCHEMES):
        uri, _user, _password, _database, timeout = parse_bolt_location(loc)
        parts = urlsplit(uri)
        try:
            port = parts.port
        except ValueError as exc:
            raise InvalidInputError(f"store location {redact(loc)!r}: {exc} (ports are 1 to 65535)") from None
        if not parts.hostname or port == 0:
            raise InvalidInputError(f"store location {redact(loc)!r} has no host (or port 0)")
        if timeout is not None:
            store_timeout(timeout)
        extra = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)})
        if extra and loc.startswith("bolt"):
            raise InvalidInputError(
                f"store location {redact(loc)!r}: unknown parameter(s) {', '.join(extra)}; a bolt:// location takes "
                "only ?timeout=SECONDS (routing context is for neo4j://)"
            )
    elif _MISTYPED_SCHEME.match(loc) and "://" not in loc:
        raise InvalidInputError(
            f"store location {redact(loc)!r} looks like a mistyped Neo4j URI: write bolt://HOST:PORT or neo4j://…; "
            f"for a file of that name, write embedded://{loc}"
        )
    elif "://" in loc and not loc.startswith("embedded://"):
        raise InvalidInputError(
            f"unsupported store location {redact(loc)!r}: use a file path, embedded://PATH, bolt://HOST:PORT or neo4j://…"
        )


def embedded_path(location: str) -> Path | None:
    """The file of an embedded store location (``embedded://`` prefix optional); None for a Neo4j one."""
    return None if location.startswith(NEO4J_SCHEMES) else Path(location.removeprefix("embedded://"))


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
    check_location(loc)
    if loc.startswith(NEO4J_SCHEMES):
        from graph_store.backends.neo4j_store import Neo4jStore

        return Neo4jStore.from_env(uri=loc)
    from graph_store.backends.embedded import EmbeddedStore

    path = embedded_path(loc)
    assert path is not None  # (a Neo4j location returned above)
    if not create and not path.exists():
        raise StoreUnavailableError(
            f"no store at {path}; import data first (graphrouter import dcrouter, or make demo)"
        )
    return EmbeddedStore(path)
