"""Translating the Neo4j driver's and server's errors into graph_store errors, for :mod:`neo4j_store`'s methods.

An unreachable server is :class:`StoreUnavailableError` (and the store then fails fast for its timeout), as is one
that answers but is not serving (a Bolt request "not expected in state": ArcadeDB stopped but still holding its port);
a constraint violation :class:`ConflictError`, anything else the server rejects :class:`GraphStoreError`; passwords
are scrubbed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from neo4j import exceptions as neo4j_errors

from graph_store.errors import ConflictError, GraphStoreError, StoreUnavailableError

# Driver exceptions meaning "the database cannot be reached now": retrying later may succeed.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    neo4j_errors.ServiceUnavailable,  # includes SessionExpired's siblings: routing / read / write unavailable
    neo4j_errors.SessionExpired,
    neo4j_errors.DatabaseUnavailable,
    neo4j_errors.TransientError,  # still failing after the driver's retries
    neo4j_errors.IncompleteCommit,
    OSError,
)

# Of those, the ones meaning the server (not one transaction) is out of reach: the store then fails fast a while.
_OUTAGE: tuple[type[BaseException], ...] = (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired, OSError)


def _not_serving(exc: neo4j_errors.Neo4jError) -> bool:
    """The server refused a request for the state of its connection, not for the request itself."""
    return (exc.code or "").startswith("Neo.ClientError.Request.") and "not expected in state" in (exc.message or "")


P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Re-raise driver and server errors as graph_store errors (ours pass through unchanged); fail fast while the
    server is known to be out of reach (see graph_store.location.DEFAULT_TIMEOUT_S)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: Any = args[0]  # a Neo4jStore
        if func.__name__ != "_ping_once":  # a ping always asks the server
            self._fail_fast()
        try:
            result = func(*args, **kwargs)
        except GraphStoreError:
            raise
        except _UNAVAILABLE as exc:
            if isinstance(exc, _OUTAGE):
                self._down_until = time.monotonic() + self._timeout
            raise StoreUnavailableError(self._scrub(f"Neo4j at {self._where} is unavailable: {exc}")) from exc
        except (neo4j_errors.AuthError, neo4j_errors.AuthConfigurationError) as exc:
            raise StoreUnavailableError(self._scrub(f"Neo4j at {self._where} refused the credentials: {exc}")) from exc
        except neo4j_errors.ConstraintError as exc:
            raise ConflictError(self._scrub(f"Neo4j constraint violated: {exc}")) from exc
        except neo4j_errors.Neo4jError as exc:
            if _not_serving(exc):
                self._down_until = time.monotonic() + self._timeout
                raise StoreUnavailableError(
                    self._scrub(f"Neo4j at {self._where} is not serving requests: {exc.message}")
                ) from exc
            raise GraphStoreError(self._scrub(f"Neo4j error {exc.code}: {exc.message}")) from exc
        except neo4j_errors.DriverError as exc:
            if "closed" in str(exc).lower():
                raise StoreUnavailableError(self._scrub(f"the Neo4j store is closed: {exc}")) from exc
            raise GraphStoreError(self._scrub(f"Neo4j driver error: {exc}")) from exc
        self._down_until = 0.0
        return result

    return wrapper
