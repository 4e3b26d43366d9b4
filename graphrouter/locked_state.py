"""State guarded by a lock that still pickles: a checkpoint holds the online learner and the exploration budget."""

from __future__ import annotations

import threading


class LockedState:
    """State guarded by ``self._lock``: pickled (a checkpoint, a deepcopy) without the lock, given a new one after."""

    _lock: threading.Lock

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
