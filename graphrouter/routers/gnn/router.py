"""The inductive heterogeneous GNN router (registered as ``"gnn"``): hyper-parameters, fitting, the fit from
outcomes, the request path; its candidate list and the changes to it are in
:mod:`~graphrouter.routers.gnn.candidate_list`.

A new query's output depends only on its ego-graph (:mod:`graphrouter.routers.gnn.graph`), so
:meth:`GnnRouter.predict_effect` runs the compiled ego path (:class:`~graphrouter.routers.gnn.ego.EgoPath`) over
the cached states of the stored graph (:class:`~graphrouter.routers.gnn.serving.ServingCache`): two layers over
≤ ``k_sim`` + 1 + C source nodes, then the decoder. Cost is computed from tokens and prices, times a per-candidate
multiplier (or one for the input and one for the output part) learned from observed costs
(:class:`~graphrouter.cost.CostModel`).

:meth:`GnnRouter.register_candidate` adds a candidate (description embedding, prices, size, a few observed
outcomes) without retraining: its states are computed from cached ones at once, and an exact refresh (one forward
pass over the stored graph) follows in the background. ``remove_candidate`` and ``add_outcomes`` change the
candidates and their observed outcomes the same way. The router is the one owner of the candidate list:
``candidates`` and ``kinds`` are tuples replaced on every change.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers

import numpy as np

from graph_store import AGENT, LLM
from graphrouter.neighbours import NeighbourIndex
from graphrouter.routers.base import Router, register
from graphrouter.routers.baselines import inner_split_min
from graphrouter.routers.gnn.candidate_list import CandidateList
from graphrouter.routers.gnn.correction import Correction
from graphrouter.routers.gnn.ego import EgoPath
from graphrouter.routers.gnn.fallback import Fallback, Z, fallback_for
from graphrouter.routers.gnn.fit import FitPrior, fit_correction, refit_base
from graphrouter.routers.gnn.graph import (
    Candidates,
    QueryNodes,
    StoredGraph,
    drop_self,
    pad_neighbours,
    stored_neighbours,
)
from graphrouter.routers.gnn.observed import Observed, candidate_features
from graphrouter.routers.gnn.reference import predict_effect_full_graph, predict_effect_reference
from graphrouter.routers.gnn.schema import PAIR_KS
from graphrouter.routers.gnn.serving import ServingCache
from graphrouter.routers.gnn.training import Member, Recipe, TrainingSet, fit_member, out_of_fold_tasks
from graphrouter.world import QueryFeatures, World


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_settings(**checks: tuple[object, bool, str]) -> None:
    """ValueError naming every setting out of range (``name=(value, ok, what it must be)``)."""
    bad = [f"{name}={value!r} (must be {want})" for name, (value, ok, want) in checks.items() if not ok]
    if bad:
        raise ValueError("invalid GNN settings: " + "; ".join(bad))


@register
class GnnRouter(CandidateList, Router):
    """Heterogeneous GNN over queries, tasks and candidates; inductive in new queries and new candidates."""

    name = "gnn"

    def __init__(
        self,
        seeds: tuple[int, ...] = (0, 1, 2),
        hidden: int = 32,
        num_layers: int = 2,
        dropout: float = 0.3,
        in_drop: float = 0.7,
        lr: float = 2e-3,
        weight_decay: float = 1e-2,
        max_episodes: int = 300,
        eval_every: int = 10,
        patience: int = 5,
        cold_frac: float = 0.25,
        k_sim: int = 10,
        p_new: float = 0.5,
        new_ks: tuple[int, ...] = (0, 5, 20, 50),
        p_inferred_task: float = 0.5,
        uncertainty_margin: float = 1.0,
        uncertainty_power: float = 0.5,
        uncertainty_task_share: float = 1.0,
        fit_global_sd: float = 1.5,
        fit_task_sd: float = 1.0,
        fit_own: float = FitPrior.own,
        fit_peers: int = FitPrior.peers,
        fallback_z: float | None = Z,
    ) -> None:
        seeds = tuple(seeds)
        _check_settings(
            seeds=(seeds, len(seeds) > 0 and all(_is_int(x) for x in seeds), "one or more integers"),
            hidden=(hidden, hidden >= 1, "at least 1"),
            num_layers=(num_layers, num_layers >= 1, "at least 1"),
            dropout=(dropout, 0 <= dropout < 1, "in [0, 1)"),
            in_drop=(in_drop, 0 <= in_drop < 1, "in [0, 1)"),
            lr=(lr, lr > 0, "above 0"),
            weight_decay=(weight_decay, weight_decay >= 0, "at least 0"),
            max_episodes=(max_episodes, max_episodes >= 1, "at least 1 (0 would train nothing)"),
            eval_every=(eval_every, eval_every >= 1, "at least 1"),
            patience=(patience, patience >= 1, "at least 1"),
            cold_frac=(cold_frac, 0 <= cold_frac < 1, "in [0, 1)"),
            k_sim=(k_sim, k_sim >= 1, "at least 1"),
            p_new=(p_new, 0 <= p_new <= 1, "in [0, 1]"),
            p_inferred_task=(p_inferred_task, 0 <= p_inferred_task <= 1, "in [0, 1]"),
            uncertainty_margin=(uncertainty_margin, uncertainty_margin >= 0, "at least 0"),
            uncertainty_task_share=(uncertainty_task_share, 0 <= uncertainty_task_share <= 1, "in [0, 1]"),
            fit_global_sd=(fit_global_sd, fit_global_sd > 0, "above 0"),
            fit_task_sd=(fit_task_sd, fit_task_sd > 0, "above 0"),
        )
        self.seeds = tuple(seeds)
        # the per-task fallback to the per-task table where it routes better on validation by more than fallback_z
        # standard errors (gnn.fallback); None: never
        self.fallback_z = fallback_z
        self.fallback: Fallback | None = None
        # routing subtracts w_effect · margin / (1 + n_observed) ** power from each candidate's utility: a guard
        # against the winner's curse on a candidate registered with few outcomes; with margin 1 a description-only
        # candidate (n = 0) cannot win on predicted effect, so it cannot make routing worse than the known ones.
        # Margin 1, power 0.5 and the fit's priors (global sd 1.5, task sd 1.0): on an inner validation split of
        # dcrouter's official train queries (nemotron, qwen and both withheld; experiments/evaluate.py new-llm
        # --inner --variants) the looser penalties (power 1-2) let a candidate fitted to 5-50 outcomes win where
        # it is worse; of the conservative ones, this is the best under which the synthetic star (95% right
        # against at most 50%) takes ≥ 80% of traffic after 20 outcomes (priors of sd 0.5 did 0.0009 better on
        # validation but left the star at 46%).
        self.uncertainty_margin, self.uncertainty_power = uncertainty_margin, uncertainty_power
        # on a query's task, a candidate's outcomes on other tasks count this much in its penalty (1: all alike)
        self.uncertainty_task_share = uncertainty_task_share
        # the priors of the per-candidate fit from outcomes (gnn.fit): logit-scale sd of its global and per-task
        # offsets
        self.fit_global_sd, self.fit_task_sd = fit_global_sd, fit_task_sd
        # prior mass of a registered candidate's own logit against resembling a trained candidate (gnn.fit)
        self.fit_own = fit_own
        # how many agreeing known candidates' residuals pair the fit's rows (gnn.fit.FitPrior.peers)
        self.fit_peers = fit_peers
        self.hidden, self.num_layers, self.dropout, self.in_drop = hidden, num_layers, dropout, in_drop
        self.lr, self.weight_decay = lr, weight_decay
        self.max_episodes, self.eval_every, self.patience = max_episodes, eval_every, patience
        self.cold_frac, self.k_sim, self.k_pair = cold_frac, k_sim, PAIR_KS[-1]
        self.p_new, self.new_ks, self.p_inferred_task = p_new, tuple(new_ks), p_inferred_task
        self._index: NeighbourIndex | None = None  # over the stored queries, for the requests' neighbours
        # per candidate name, the stored positions of its outcomes that arrived since training (most recent last):
        # what the fit from outcomes fits its offsets to
        self._fresh: dict[str, np.ndarray] = {}
        self.members: list[Member] = []
        self._cache: ServingCache  # set by fitting: the serving state, its lock and its background refresh

    def __getstate__(self) -> dict:
        """A consistent copy with exact caches (pickling and deepcopy), taken under the serving lock."""
        with self._cache.lock:
            state = dict(self.__dict__)
            state.pop("_own_cache", None)  # derived per snapshot of the candidates; not saved
            state["cost_model"] = copy.copy(self.cost_model)
            state["members"] = list(self.members)
            state["_cache"] = self._cache.exact_copy()
            return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_fresh", {})
        state.setdefault("_trained", tuple(state["world"].data.candidates))
        state.setdefault("uncertainty_power", 0.5)
        state.setdefault("uncertainty_task_share", 1.0)  # pickled before per-task penalties: every outcome alike
        state.setdefault("fit_global_sd", FitPrior.global_sd)
        state.setdefault("fit_task_sd", FitPrior.task_sd)
        state.setdefault("fit_own", FitPrior.own)
        state.setdefault("fit_peers", FitPrior.peers)
        state.setdefault("fallback_z", None)  # pickled before the fallback: none
        state.setdefault("fallback", None)
        self.__dict__.update(state)
        self._cache.fitter = self._fit_correction
        if "_kinds" not in state:  # a state without the columns' kinds: derived from the world and the backing
            backing = self._cache.candidates.backing
            trained = dict(zip(self.world.data.candidates, self.world.data.candidate_kind, strict=True))
            self._kinds = tuple(
                AGENT if c in backing else trained.get(name, LLM) for c, name in enumerate(self.candidates)
            )
        self._kinds = tuple(self._kinds)

    # -- training --
    def min_queries(self) -> int:
        return inner_split_min(self.k_sim + 1)  # each member's fitting queries need k_sim neighbours among them

    def _fit(self, world: World, train_idx: np.ndarray) -> None:
        data = world.data
        self._candidates = tuple(data.candidates)
        self._trained = tuple(data.candidates)  # the candidates the shared weights were fitted with
        self._kinds = tuple(data.candidate_kind)  # "LLM" or "Agent" per column
        self._nodes = QueryNodes(
            np.ascontiguousarray(world.query_emb[train_idx], dtype=np.float32),
            data.query_task[train_idx].astype(np.int64),
            np.asarray(world.task_emb, dtype=np.float32),
            len(data.task_names),
        )
        cands = Candidates(
            candidate_features(world.candidate_emb, data.candidate_prices, data.candidate_size_b),
            np.array(data.effect[train_idx], dtype=np.float64),
            data.backing(),  # agent column → the column of the LLM it is backed by
        )
        oof_task = out_of_fold_tasks(self._nodes.emb, self._nodes.task, self.p_inferred_task, self.task_inferer.c)
        recipe = Recipe(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)})
        training = TrainingSet(self._nodes, cands, oof_task)
        self.members = [fit_member(training, recipe, seed) for seed in self.seeds]
        self._index = None
        self._fresh = {}
        self._cache = ServingCache([m.model for m in self.members], self._stored_graph(), cands)
        self._cache.fitter = self._fit_correction
        held = [(m.val_rows, m.val_prob) for m in self.members if m.val_rows is not None]
        self.fallback = None  # chosen on the members' own validation splits of the training queries
        if self.fallback_z is not None and held:
            self.fallback = fallback_for(held, world, train_idx, self.cost_model, self.penalty, self.fallback_z)

    def apply_fallback(self, effect: np.ndarray, task: np.ndarray) -> np.ndarray:
        """``effect`` with the per-task table's predictions for queries of the tasks that fall back (trained
        candidates, moved by their fit from outcomes since training as their own predictions are); every serving path
        calls it last."""
        if self.fallback is None:
            return effect
        backing = dict(self._cache.candidates.backing)
        correction = self._cache.serving[1].correction
        shift = None if correction is None else correction.offsets
        trained = frozenset(self._trained)
        # registered since training (or again, after their trained column was removed): their own fit stands
        keep = (frozenset(self._fresh) | frozenset(self.fallback.candidates)) - trained
        return self.fallback.apply(effect, task, self._candidates, keep, backing, shift)

    # -- the fit from outcomes --
    @property
    def fit_prior(self) -> FitPrior:
        return FitPrior(self.fit_global_sd, self.fit_task_sd, own=self.fit_own, peers=self.fit_peers)

    def _fit_correction(
        self, obs: Observed, ego: EgoPath, refit: list[int] | None = None, removed: int | None = None
    ) -> Correction | None:
        """The correction of a serving state about to be installed (under the serving lock), fitted to each
        candidate's fresh outcomes (:mod:`~graphrouter.routers.gnn.fit`); a candidate registered since training may
        resemble the trained ones; an agent with none of its own takes its backing LLM's, as it takes its outcomes.
        ``refit``: only these columns are fitted, the others keep the installed correction's entries (a patched
        change; the exact refresh that follows fits them all); ``removed``: the column removed since the installed
        state (its entries dropped, the later ones moved down)."""
        columns = {self._candidates.index(n): rows for n, rows in self._fresh.items() if n in self._candidates}
        trained = set(self._trained)
        resemble = np.array([i for i, n in enumerate(self._candidates) if n in trained], np.int64)
        installed = self._cache.serving[1].correction if self._cache.serving is not None else None
        base = None if refit is None else refit_base(installed, removed, resemble)
        if base is not None:  # a patched change: only the columns it names are fitted
            columns = {c: rows for c, rows in columns.items() if c in set(refit)}
        elif not columns:
            return None
        search, n_tasks = self._neighbour_index().search, self._nodes.n_tasks
        peers = np.array([i for i in resemble.tolist() if self._kinds[i] == LLM], np.int64)  # trained LLMs
        correction = fit_correction(
            ego, obs, self._nodes.emb, columns, search, self.k_pair, n_tasks, self.fit_prior, resemble, peers
        )
        if base is not None:
            correction = base.merged(correction, set(refit), len(self._candidates), n_tasks)
        if correction is None:
            return None
        return correction.copied(dict(self._cache.candidates.backing))

    # -- neighbours --
    def _neighbour_index(self) -> NeighbourIndex:
        if self._index is None or len(self._index) != len(self._nodes):
            self._index = NeighbourIndex(self._nodes.emb)
        return self._index

    def _stored_graph(self) -> StoredGraph:
        """The stored queries with their ``k_sim`` nearest other stored queries (computed once per stored graph)."""
        emb = self._nodes.emb
        index = self._neighbour_index()
        if index.approximate:
            nb, sim = drop_self(*index.search(emb, self.k_sim + 1), self.k_sim)
        else:
            nb, sim = stored_neighbours(emb, np.arange(len(emb)), self.k_sim)
        return StoredGraph(self._nodes, nb, sim, self.k_sim, self.k_pair)

    # -- serving --
    def _ego_inputs(
        self, q: QueryFeatures, obs: Observed | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A request's embeddings, tasks (inferred where unknown), ``k_pair`` nearest stored queries with their
        similarities (through the :class:`~graphrouter.neighbours.NeighbourIndex`), and pair features."""
        emb = np.asarray(q.embedding, dtype=np.float32)
        task = np.asarray(q.task, dtype=np.int64)
        if (task < 0).any():
            task = self.task_inferer.fill(q).task.astype(np.int64)
        nb, sim = pad_neighbours(*self._neighbour_index().search(emb, self.k_pair), self.k_pair)
        return emb, task, nb, sim, (obs or self._cache.observed).pair_features(nb, sim, task)

    def predict_effect(self, q: QueryFeatures) -> np.ndarray:
        """(n, C) effect probabilities for (possibly new) queries, on their ego-graphs; ``q.task`` must be known
        (``Router.score`` fills it in). Stored queries are treated as new: ``q.index`` is never read. Runs the
        numpy-compiled ego path (:class:`~graphrouter.routers.gnn.ego.EgoPath`)."""
        obs, ego = self._cache.serving
        inputs = self._ego_inputs(q, obs)
        return self.apply_fallback(ego.predict(*inputs), inputs[1])

    def predict_effect_reference(self, q: QueryFeatures) -> np.ndarray:
        """The same as :meth:`predict_effect`, through the PyTorch modules (the reference the tests compare to)."""
        return predict_effect_reference(self, q)

    def predict_effect_full_graph(self, q: QueryFeatures) -> np.ndarray:
        """The same as :meth:`predict_effect`, the way GraphRouter itself answers: the new queries are inserted
        into the whole stored graph and every member runs over all of it. Slow by design (benchmarks and tests
        compare it with the cached ego path); not safe to call while another thread routes."""
        return predict_effect_full_graph(self, q)

    def _refresh(self) -> None:
        """Make the serving caches exact, now."""
        self._cache.refresh()

    def sub_ensemble(self, keep: list[int]) -> GnnRouter:
        """A copy that serves with the members ``keep`` (distinct positions) only, over the same stored graph,
        candidates and outcomes since training: what each member adds to the ensemble
        (``experiments/gnn_recipe.py``). It keeps the whole ensemble's per-task fallback decision (chosen on every
        member's validation split) and no online learner (a scorer attaches its own)."""
        if not keep or len(set(keep)) != len(keep) or any(not 0 <= i < len(self.members) for i in keep):
            raise ValueError(f"members to keep must be distinct positions in 0..{len(self.members) - 1}, got {keep}")
        out = copy.copy(self)
        out.members, out.online = [self.members[i] for i in keep], None
        out.seeds = tuple(self.seeds[i] for i in keep) if len(self.seeds) == len(self.members) else out.seeds
        out._cache = ServingCache([m.model for m in out.members], self._cache.stored, self._cache.candidates)
        out._cache.fitter = out._fit_correction
        out._cache.refresh()  # installed again with the fit from outcomes of the candidates that have some
        return out

    def wait_exact(self, timeout: float | None = None) -> bool:
        """Block until the serving caches are exact again after the last change (True), or ``timeout`` s passed."""
        return self._cache.wait_exact(timeout)

    def penalty(self, weights: tuple[float, float], task: np.ndarray | None = None) -> np.ndarray | None:
        """``w_effect · margin / (1 + n)^power`` with ``n`` a candidate's outcomes (:meth:`outcome_counts`); for
        queries of tasks ``task``, its outcomes on other tasks count :attr:`uncertainty_task_share` each. Only the
        routing penalty is per task: exploration's spread, an agent's discount and the fallback's choice at training
        count every outcome alike."""
        if self.uncertainty_margin <= 0:
            return None
        n_observed = self.outcome_counts()  # visible outcomes per candidate (and those learned online)
        if task is not None and self.uncertainty_task_share < 1:
            task = np.asarray(task)
            known = (task >= 0)[:, None]  # a query of no known task: every outcome counts alike
            on_task = np.where(known, self.task_outcome_counts()[np.maximum(task, 0)], n_observed[None, :])
            n_observed = on_task + self.uncertainty_task_share * np.maximum(n_observed[None, :] - on_task, 0.0)
        return weights[0] * self.uncertainty_margin / (1.0 + n_observed) ** self.uncertainty_power

    def task_outcome_counts(self) -> np.ndarray:
        """(T, C) :meth:`outcome_counts` per task."""
        n = np.asarray(self._cache.observed.task_count, dtype=float)
        if self.online is None:
            return n
        weight = self.online_weight(self.trained_counts())
        return n + weight[None, :] * self.online.task_counts(self.candidates, n.shape[0])

    def trained_counts(self) -> np.ndarray:
        return np.asarray(self._cache.observed.count, dtype=float)  # an agent counts the outcomes it inherits

    def trained_names(self) -> frozenset[str]:
        return frozenset(self._trained)  # a name removed and registered again is new

    def combine(
        self, q: QueryFeatures, effect: np.ndarray, cost_norm: np.ndarray, weights: tuple[float, float]
    ) -> np.ndarray:
        """:meth:`Router.combine`, and an agent's lift over its LLM counted only beyond what its own outcomes show.

        An agent inherits its LLM's outcomes, so its penalty is its LLM's (tiny), and a fit to its first outcomes
        moves it at once: one success on a query every LLM failed (an agent with a code tool on dcrouter's mbpp) lifted
        an agent on qwen from 0.76 to 0.93 on gsm8k and from 0.06 to 0.27 on trivia_qa, above every LLM. Here, per
        query, the part of its predicted effect above its LLM's is discounted by up to the penalty a new candidate
        with its *own* outcomes would pay, ``margin / (1 + own)^power``: it is routed like its LLM until its
        outcomes show more than that, and bad news (a prediction below its LLM's) counts at once."""
        u = super().combine(q, effect, cost_norm, weights)
        cands = self._cache.candidates  # one snapshot: its columns are those of ``effect`` unless a change landed
        if not cands.backing or self.uncertainty_margin <= 0 or len(cands.features) != effect.shape[1]:
            return u
        agents, llms, own = self._agents_own_outcomes(cands)
        own = own.copy()
        if self.online is not None:
            own += self.online.counts(self.candidates)[agents]
        unearned = self.uncertainty_margin / (1.0 + own) ** self.uncertainty_power
        lift = np.clip(effect[:, agents] - effect[:, llms], 0.0, unearned[None, :])
        u = u.copy()
        u[:, agents] -= weights[0] * lift
        return u

    def _agents_own_outcomes(self, cands: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The agent columns of ``cands``, their LLMs' columns, and the stored outcomes of each agent's own (not
        inherited); computed once per snapshot of the candidates (a scan of every stored query)."""
        cached = getattr(self, "_own_cache", None)
        if cached is None or cached[0] is not cands:
            agents = np.fromiter(cands.backing, np.int64, len(cands.backing))
            llms = np.array([cands.backing[a] for a in agents.tolist()], np.int64)
            own = np.isfinite(cands.effect[:, agents]).sum(0).astype(float)
            cached = self._own_cache = (cands, agents, llms, own)
        return cached[1], cached[2], cached[3]

    def reattach(self, world: World) -> None:
        """Serve over another stored graph without retraining: every query of ``world`` becomes a stored query
        (its outcomes visible, its neighbours indexed), e.g. the store as it has grown since training. ``world``
        must have this router's tasks and candidates, in the same order."""
        if list(world.data.task_names) != list(self.world.data.task_names):
            raise ValueError("the new stored graph has other tasks than the router was trained on; retrain")
        if list(world.data.candidates) != list(self.candidates):
            raise ValueError(f"the new stored graph's candidates {world.data.candidates} are not {self.candidates}")
        if (world.data.query_task < 0).any():
            raise ValueError("every stored query needs a task")
        width = self._nodes.emb.shape[1]
        if world.query_emb.shape[1] != width:
            raise ValueError(f"embeddings of size {world.query_emb.shape[1]}, the router's are {width}")
        if world.data.n_queries <= self.k_sim:
            raise ValueError(f"the GNN router needs more than {self.k_sim} stored queries")
        with self._cache.lock:
            self.world, self.train_idx = world, np.arange(world.data.n_queries)
            self._nodes = QueryNodes(
                np.ascontiguousarray(world.query_emb, dtype=np.float32),
                world.data.query_task.astype(np.int64),
                self._nodes.task_emb,
                self._nodes.n_tasks,
            )
            self._kinds = tuple(world.data.candidate_kind)
            self._index = None
            effect = np.array(world.data.effect, dtype=np.float64)
            trained = set(self._trained)
            self._fresh = {
                name: np.flatnonzero(np.isfinite(effect[:, c]))
                for c, name in enumerate(self._candidates)
                if name not in trained
            }
            cands = Candidates(self._cache.candidates.features, effect, world.data.backing())
            self._cache.reset(self._stored_graph(), cands)

    def observed_effects(self) -> np.ndarray:
        return self._cache.candidates.effect  # the stored queries are the training queries, in train_idx order
