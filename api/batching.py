"""Micro-batching of route requests: concurrent requests share one embedding call and one router pass.

One dispatcher thread owns the routing work. A request is queued with a future; the dispatcher takes everything
queued (at most ``max_batch``) and routes it with :meth:`Scorer.top_k_many`. A request that finds the dispatcher
idle is dispatched at once (a lone request never waits for the window); requests that arrive while a batch runs
queue up and form the next batch, which waits at most ``window`` seconds more for stragglers only when it is not
already full. On by ``GRAPHROUTER_BATCH_WINDOW_MS`` > 0 (``GRAPHROUTER_BATCH_MAX`` requests at most).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("api")

Work = Callable[[Sequence[Any]], Sequence[Any]]


class MicroBatcher:
    """Runs ``work(items) -> results`` (one result or exception per item) over batches of submitted items."""

    def __init__(self, work: Work, window_s: float, max_batch: int) -> None:
        self.work = work
        self.window_s = window_s
        self.max_batch = max_batch
        self._queue: deque[tuple[Any, Future[Any]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name="graphrouter-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append((item, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _take(self) -> list[tuple[Any, Future[Any]]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return None
        return self._drain()

    def _drain(self) -> list[tuple[Any, Future[Any]]]:
        with self._cond:
            n = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        busy_before = False  # did a batch just run (so the queue filled while it ran)?
        while True:
            if busy_before:
                with self._cond:
                    queued = len(self._queue)
                if 0 < queued < self.max_batch and self.window_s > 0:
                    deadline = time.monotonic() + self.window_s  # under load: a little longer for a fuller batch
                    with self._cond:
                        while len(self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                            self._cond.wait(left)
            batch = self._take()
            if batch is None:
                return
            self._dispatch(batch)
            with self._cond:
                busy_before = bool(self._queue)

    def _dispatch(self, batch: list[tuple[Any, Future[Any]]]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches += 1
        self.items += len(live)
        try:
            results = self.work([item for item, _ in live])
        except BaseException as exc:  # the whole batch failed (e.g. no scorer): every request gets the error
            for _, f in live:
                f.set_exception(exc)
            return
        for (_, f), result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                f.set_exception(result)
            else:
                f.set_result(result)
