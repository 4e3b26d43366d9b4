"""The GNN router's serving cache: what a request reads, and how it follows candidate changes.

:class:`ServingCache` holds every member's per-layer node states of the stored graph, the current candidates
(:class:`~graphrouter.routers.gnn.graph.Candidates`) and the ``(Observed, EgoPath)`` pair a request reads (swapped
in one assignment). A candidate change (register, remove, new outcomes) is made routable at once by
:meth:`~ServingCache.patched`: the changed candidate rows are computed from the cached states of the nodes that
send to them (a candidate's kept sum of its outcome messages updated with the changed rows' messages only), every
other node keeps its cached state. :meth:`~ServingCache.commit` installs it and starts a
background refresh (one forward pass over the stored graph per member) that makes the caches exact again;
:meth:`~ServingCache.wait_exact` waits for it. Changes and installs happen under :attr:`ServingCache.lock`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np
import torch

from graphrouter.routers.gnn.candidate_state import LayerState, candidate_rows, keep_message_sums
from graphrouter.routers.gnn.correction import Correction
from graphrouter.routers.gnn.ego import EgoPath
from graphrouter.routers.gnn.graph import Candidates, StoredGraph, serving_graph
from graphrouter.routers.gnn.model import HeteroRouterGNN
from graphrouter.routers.gnn.observed import Observed, inherited_columns
from graphrouter.routers.gnn.schema import ANSWERED_BY, CANDIDATE

States = list[list[LayerState]]  # per member, per layer (see candidate_state.LayerState)
Serving = tuple[States, Observed, EgoPath]
_UNPICKLED = (
    "lock",
    "_exact",
    "_background",
    "_version",
    "_shape_version",
    "_dirty",
    "fitter",
    "_last_compute",
    "_last_end",
    "_back_to_back",
)
# Under a stream of changes the background refresh pauses REFRESH_PAUSE times its last pass between passes, so it takes
# about 2 / (2 + REFRESH_PAUSE) of a core (passes of equal length): a pass over 100k queries takes seconds per member,
# and one outcome a second kept a core busy (the patched state is served meanwhile, so a later exact refresh costs only
# exactness).
# A pass may follow the last one at once, without the pause, if that one was not itself such a pass: a change that
# comes in two steps (a registration, then its outcomes) is exact after two passes, not after a pause (23 s at 100k).
REFRESH_PAUSE = 4.0
# fits the per-candidate correction (offsets, resemblance) of a serving state about to be installed (see gnn.fit);
# set by the router. Its third argument: None to fit every candidate, or the columns to refit (the others keep what
# the installed state has); its fourth: the column removed since the installed state, if any
Fitter = Callable[[Observed, EgoPath, list[int] | None, int | None], Correction | None]
log = logging.getLogger(__name__)


def _column_before(c: int, removed: int | None, n_before: int) -> int | None:
    """Column ``c``'s position before a change that removed column ``removed`` (None: a column it appends)."""
    old = c + 1 if removed is not None and c >= removed else c
    return old if old < n_before else None


def _start_pending(ref: weakref.ReferenceType[ServingCache], pending: object) -> None:
    """A paused refresh's timer: start it, if its cache is still alive and still waits for this one."""
    cache = ref()
    if cache is None:
        return
    with cache.lock:
        if cache._background is pending:
            cache._back_to_back = False
            cache._start_refresh()


class ServingCache:
    """The serving state of an ensemble over a stored graph; exact after construction (one pass per member)."""

    def __init__(self, models: list[HeteroRouterGNN], stored: StoredGraph, candidates: Candidates) -> None:
        self.models = models
        self.stored = stored
        self.candidates = candidates
        self.states: States = []
        self.serving: tuple[Observed, EgoPath] | None = None  # what a request reads, swapped in one assignment
        self._init_sync()
        self.refresh()

    def _init_sync(self) -> None:
        self.fitter: Fitter | None = None  # the router's fit from outcomes, run on every install (not pickled)
        self.lock = threading.RLock()  # held while candidates change and while a refresh installs
        self._version = 0  # bumped by every change; a background refresh installs only the version it computed
        self._exact = threading.Event()  # set while the serving caches are exact
        self._exact.set()
        # the refresh thread, if one runs, or the token of one pending after a pause (set under lock)
        self._background: threading.Thread | object | None = None
        self._shape_version = 0  # bumped when columns are added or removed
        self._dirty: set[int] = set()  # columns changed since the background refresh took its snapshot
        self._last_compute = 0.0  # seconds the last background pass took
        self._last_end = float("-inf")  # when it ended (time.monotonic)
        self._back_to_back = False  # the last pass started within the pause after the one before it

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_sync()
        obs, ego = self.serving or (None, None)
        # pickled before changes were incremental (states pickled before they kept the message sums need nothing:
        # a change sums every message of its candidate until the next exact refresh brings the sums)
        if not hasattr(obs, "_row_sum") or not hasattr(ego, "_dec_wc"):
            self._install(*self.compute(self.candidates))

    def exact_copy(self) -> ServingCache:
        """A consistent copy with exact caches (refreshed first if needed), for pickling and deepcopy: the arrays
        are never mutated in place, so only the containers are copied."""
        with self.lock:
            if not self._exact.is_set():
                self.refresh()
            copied = ServingCache.__new__(ServingCache)
            copied.__setstate__({**self.__getstate__(), "models": list(self.models), "states": list(self.states)})
            return copied

    @property
    def observed(self) -> Observed:
        return self.serving[0]

    def reset(self, stored: StoredGraph, candidates: Candidates) -> None:
        """Serve over another stored graph (reattaching), exactly, now."""
        with self.lock:
            self.stored, self.candidates = stored, candidates
            self.refresh()

    @torch.no_grad()
    def compute(self, cands: Candidates, stored: StoredGraph | None = None) -> Serving:
        """Every member's per-layer states of the stored graph, its observed aggregates, and the compiled ego path:
        one forward pass over the whole stored graph per member. Reads nothing that a candidate change mutates."""
        graph, obs = serving_graph(stored or self.stored, cands)
        graph.validate()
        states = []
        for model in self.models:
            model.eval()
            hs, kept = model.forward_keeping(graph.x_dict, graph.edge_index_dict, graph.edge_attr_dict, ANSWERED_BY)
            states.append(keep_message_sums(model, hs, kept, obs.visible))
        return states, obs, EgoPath(self.models, states, self.stored.k_sim)

    def _install(
        self, states: States, obs: Observed, ego: EgoPath, refit: list[int] | None = None, removed: int | None = None
    ) -> None:
        if self.fitter is not None:  # fitted to this very state, before any request can read it
            ego.correction = self.fitter(obs, ego, refit, removed)
        self.states = states
        self.serving = (obs, ego)  # one assignment: a request reads aggregates and ego path of the same version

    def refresh(self) -> None:
        """Cache the serving state exactly, now (after fitting, reattaching or loading)."""
        with self.lock:
            self._version += 1
            self._background = None  # a refresh in flight will not install
            self._install(*self.compute(self.candidates))
            self._exact.set()

    def ensure_exact(self) -> None:
        """Refresh now if a background refresh is due (caller holds :attr:`lock` to keep it so)."""
        with self.lock:
            if not self._exact.is_set():
                self.refresh()

    @torch.no_grad()
    def patched(
        self, cands: Candidates, columns: list[int], removed_row: int | None = None, base: Serving | None = None
    ) -> Serving:
        """The serving state for ``cands`` without a pass over the graph: the candidate rows ``columns`` (new, or
        with new outcomes) are computed from the cached states of the nodes that send to them (queries with
        outcomes for them, tasks; a candidate's kept sum of its outcome messages moved by the changed rows'
        messages only, :func:`~graphrouter.routers.gnn.candidate_state.candidate_rows`); ``removed_row`` is
        dropped; every other node keeps its cached state, which the change moves only slightly. The observed
        aggregates and the ego path are updated for the changed columns only (:meth:`Observed.changed`,
        :meth:`EgoPath.with_candidates`): the work follows the change, not the number of candidates × stored
        queries. ``base``: patch that (states, observed, ego path) instead of the installed state. Changes nothing
        here."""
        old_states, (obs_now, ego_now) = (self.states, self.serving) if base is None else (base[0], base[1:])
        obs = obs_now.changed(columns, *inherited_columns(cands.effect, cands.backing, columns), removed=removed_row)
        n_cand = len(cands.features)
        old_columns = {c: _column_before(c, removed_row, obs_now.n_candidates) for c in columns}
        was = {c: None if old is None else (obs_now, old) for c, old in old_columns.items()}
        states = []
        for model, old in zip(self.models, old_states, strict=True):
            rows = {c: candidate_rows(model, cands, obs, old, c, was[c]) for c in columns}
            layers = []
            for i, layer in enumerate(old):
                layer = dict(layer)
                for key in (CANDIDATE, ANSWERED_BY):
                    if key not in layer:
                        continue
                    prev = layer[key]
                    if removed_row is not None:
                        keep = torch.ones(len(prev), dtype=torch.bool)
                        keep[removed_row] = False
                        prev = prev[keep]
                    if len(prev) < n_cand:
                        prev = torch.cat([prev, torch.zeros(n_cand - len(prev), prev.shape[1], dtype=prev.dtype)])
                    elif removed_row is None:
                        prev = prev.clone()
                    for c, (h, sums) in rows.items():
                        prev[c] = h[i] if key == CANDIDATE else sums[i]
                    layer[key] = prev
                layers.append(layer)
            states.append(layers)
        last = np.stack([s[-1][CANDIDATE].numpy().astype(np.float32) for s in states])
        return states, obs, ego_now.with_candidates(last, list(columns), removed_row)

    def commit(
        self,
        cands: Candidates,
        serving: Serving,
        columns: list[int],
        reshaped: bool,
        refit_only: bool = False,
        removed: int | None = None,
    ) -> None:
        """Make a computed change current (caller holds :attr:`lock`; nothing here can fail halfway) and make sure
        an exact refresh follows in the background. ``refit_only``: the fit from outcomes refits only ``columns``
        (appended or changed; ``removed``: the one column removed, the later ones moved down) and the other
        candidates keep their installed correction until the refresh refits them all, so a change costs the changed
        candidates' fit, not every candidate's."""
        self.candidates = cands
        self._install(*serving, refit=list(columns) if refit_only else None, removed=removed)
        self._version += 1
        if reshaped:  # columns moved: what the background refresh computes no longer fits
            self._shape_version += 1
            self._dirty = set()
        else:
            self._dirty |= set(columns)
        self._exact.clear()
        if self._background is None:  # decided under the lock: exactly one refresh thread at a time
            self._schedule()

    def _schedule(self) -> None:
        """Start the background refresh, at once or after the pause :data:`REFRESH_PAUSE` asks for since the last
        pass ended (caller holds :attr:`lock`); one pass within the pause is let through at once, the next waits for
        it. The refresh thread is never a daemon: the interpreter waits for it at exit instead of killing it inside
        torch (an abort). The timer of a pause is one, holding only a weak reference: a cache swapped out meanwhile
        (a retrained scorer installed) is not refreshed for nothing."""
        delay = REFRESH_PAUSE * self._last_compute - (time.monotonic() - self._last_end)
        if delay <= 0 or not self._back_to_back:
            self._back_to_back = delay > 0
            self._start_refresh()
            return
        pending = object()
        self._background = pending  # one refresh at a time, pending ones included
        timer = threading.Timer(delay, _start_pending, args=(weakref.ref(self), pending))
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError:  # no thread to be had: the next change tries again
            self._background = None

    def _start_refresh(self) -> None:
        """Start the refresh thread now (caller holds :attr:`lock`)."""
        thread = threading.Thread(target=self._refresh_in_background, name="gnn-refresh", daemon=False)
        self._background = thread
        try:
            thread.start()
        except RuntimeError:  # no thread to be had (an interpreter shutting down): the next change tries again
            self._background = None

    def _refresh_in_background(self) -> None:
        """Compute exact caches from a snapshot; install them if nothing changed meanwhile. If only outcomes changed
        (same columns), install them anyway and re-patch the columns changed since, so frequent outcomes cannot
        starve the exact refresh; if columns moved, start again from a new snapshot."""
        me = threading.current_thread()
        try:
            while True:
                with self.lock:
                    if self._background is not me:
                        return
                    version, shape, cands, stored = self._version, self._shape_version, self.candidates, self.stored
                    self._dirty = set()
                started = time.monotonic()
                result = self.compute(cands, stored)
                with self.lock:
                    self._last_compute, self._last_end = time.monotonic() - started, time.monotonic()
                    if self._background is not me:  # detached (reset, a synchronous refresh): not ours to install
                        return
                    if version == self._version:
                        self._install(*result)
                        self._exact.set()
                        self._background = None
                        return
                    if shape == self._shape_version:
                        # one publication: the snapshot's exact state with the changes since patched in (installing
                        # the snapshot's first showed requests, for a moment, a state without those changes)
                        self._install(*self.patched(self.candidates, sorted(self._dirty), base=result))
                    if REFRESH_PAUSE * self._last_compute > 0.05:  # the next pass after a pause, in a new thread
                        self._schedule()
                        return
        except Exception:
            log.exception("background refresh of the GNN caches failed; the next change retries")
            with self.lock:
                if self._background is me:
                    self._background = None

    def wait_exact(self, timeout: float | None = None) -> bool:
        """Block until the serving caches are exact again after the last change (True), or ``timeout`` s passed."""
        return self._exact.wait(timeout)
