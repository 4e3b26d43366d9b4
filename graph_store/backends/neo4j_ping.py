"""The Neo4j backend's ping, bounded by the store's timeout: a mixin of :class:`Neo4jStore`.

The driver bounds connecting (``connection_timeout``), not reading: a server that holds a connection open without
answering (stopped with SIGSTOP, swapping) would hold a ping, and ``/ready`` with it, for as long as it is stuck. So
the ping runs in a thread of its own and the caller waits for it at most the timeout. One ping at a time waits on the
server; callers share it, and once it has hung for the timeout they fail at once until it returns.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import neo4j

from graph_store.backends import neo4j_queries as cypher
from graph_store.backends.neo4j_translate import translate_errors
from graph_store.errors import StoreUnavailableError


class Neo4jPing:
    """The ping methods of :class:`~graph_store.backends.neo4j_store.Neo4jStore`."""

    if TYPE_CHECKING:  # provided by Neo4jStore
        _timeout: float
        _where: str
        _down_until: float

        def _session(self) -> neo4j.Session: ...

    def _init_ping(self) -> None:
        self._ping_lock = threading.Lock()
        self._ping_thread: threading.Thread | None = None
        self._ping_result: list[BaseException | None] = []
        self._ping_started = 0.0

    def _ping(self) -> None:
        """Ask the server, within the store's timeout: a server that holds the connection open but does not answer
        (stopped, or swapping) would otherwise hold the caller (``/ready``) for as long as it is stuck; the driver
        bounds connecting, not reading. One ping at a time waits on the server; callers share it, and once it has
        hung for the timeout they fail at once until it returns."""
        with self._ping_lock:
            running = self._ping_thread
            if running is None or not running.is_alive():
                result: list[BaseException | None] = []
                running = threading.Thread(target=self._ping_now, args=(result,), name="neo4j-ping", daemon=True)
                self._ping_thread, self._ping_result, self._ping_started = running, result, time.monotonic()
                running.start()
            result, started = self._ping_result, self._ping_started
        running.join(max(started + self._timeout - time.monotonic(), 0.0))  # a ping already stuck: at once
        if running.is_alive():
            self._down_until = time.monotonic() + self._timeout
            raise StoreUnavailableError(f"Neo4j at {self._where} did not answer a ping within {self._timeout:g} s")
        if result and result[0] is not None:
            raise result[0]

    def _ping_now(self, result: list[BaseException | None]) -> None:
        try:
            self._ping_once()
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            result.append(exc)

    @translate_errors
    def _ping_once(self) -> None:
        with self._session() as session:
            session.run(cypher.PING).consume()
