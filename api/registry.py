"""The registration service: one owner of "who is a candidate" on the write side.

:class:`CandidateRegistry` owns the registry lock (every graph write that the scorer must follow is serialised by
it), the store write and its undo, the scorer update, and deletions. LLM and agent registration are one flow:

1. under the lock, refuse what cannot be (a name taken by the other kind, an agent's unknown LLM, other data under
   a registered name, a deleted candidate the scorer still holds with other data);
2. an idempotent re-registration (the same data) takes the outcomes it carries as POST /v1/outcomes does;
3. write the node and its outcomes to the store in one atomic write;
4. make it routable: the scorer (its router, the one owner of the candidate list) adds it without retraining; if it
   refuses, the store write is undone (it was new: this removes exactly what was written), so store and scorer
   agree. A router that cannot add candidates without retraining leaves it stored, with a note.

Retrained or reloaded scorers are installed through :meth:`CandidateRegistry.install` under the same lock, so no
registration slips in between reading the store and swapping the scorer in.

Replicas: every store write here carries a change record (graph_store.changes) naming this replica as its origin,
written in the same transaction. Other replicas read it (api/replication.py: ``ChangeApplier.apply``), which changes
their scorer through this registry's methods, the same a local change uses, without writing the store again.

Posted outcomes reach the serving scorer through the registry's outcome methods, in api/registry_outcomes.py;
tasks are registered and deleted by its task methods, in api/registry_tasks.py; the serving scorer is loaded and
installed by its loading methods, in api/registry_loading.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, status

from api.registry_loading import RegistryLoading
from api.registry_outcomes import RegistryOutcomes
from api.registry_tasks import RegistryTasks
from api.state import ServiceState
from graph_store import (
    AGENT,
    LLM,
    QUERY,
    Agent,
    ConflictError,
    GraphBatch,
    GraphStore,
    LLMNode,
    NodeNotFoundError,
    Outcome,
)
from graph_store.changes import (
    AGENT_DELETED,
    AGENT_REGISTERED,
    LLM_DELETED,
    LLM_REGISTERED,
    Change,
)
from graph_store.changes import now as utc_now
from graph_store.schema import NodeRecord
from graphrouter.loading import costs_billed_now, repriced_since_training
from graphrouter.scorer import Scorer

Candidate = LLMNode | Agent
log = logging.getLogger("api")
_PATH = {LLM: "/v1/llms", AGENT: "/v1/agents"}
WHAT = {LLM: "LLM", AGENT: "agent"}
_REGISTERED = {LLM: LLM_REGISTERED, AGENT: AGENT_REGISTERED}
_DELETED = {LLM: LLM_DELETED, AGENT: AGENT_DELETED}


def node_payload(node: Candidate) -> dict[str, Any]:
    """A deleted candidate's registration data (no embedding), for replicas to recognise a re-registration."""
    data = dataclasses.asdict(node)
    data.pop("embedding", None)
    return {"node": data}


def same_registration(a: Candidate | None, b: Candidate) -> bool:
    """Same registration data (:attr:`~graph_store.schema.LLMNode.registration`): same kind, same fields a client
    sends; an LLM's upstream is not part of it (PATCH changes it)."""
    return type(a) is type(b) and a is not None and a.registration == b.registration


def _upstream(node: LLMNode) -> tuple[str | None, str | None, str | None] | None:
    return None if node.base_url is None else (node.base_url, node.upstream_model, node.api_key_env)


def stamped_outcomes(name: str, kind: str, rows: list | None) -> list[Outcome]:
    """The outcome edges of a registration body (each with ``query_id``, ``effect``, ``cost``), stamped now."""
    now = utc_now()
    return [Outcome(o.query_id, name, o.effect, o.cost, kind=kind, source="api", observed_at=now) for o in rows or []]


@dataclass(frozen=True)
class Registration:
    node: Candidate
    created: bool
    routable: bool
    outcomes_written: int
    backing: LLMNode | None = None  # an agent's LLM
    note: str | None = None

    @property
    def status_code(self) -> int:
        return status.HTTP_201_CREATED if self.created else status.HTTP_200_OK

    def summary(self) -> dict[str, object]:
        """The registration fields of a response (beside the node's own)."""
        return {"created": self.created, "outcomes_written": self.outcomes_written, "note": self.note}


class CandidateRegistry(RegistryLoading, RegistryOutcomes, RegistryTasks):
    """Registers and deletes LLMs and agents in the store and the serving scorer, atomically for a client."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.lock = threading.Lock()  # serialises graph writes: check, write the store, update the scorer
        self._init_loading()

    # ---- registering --------------------------------------------------------------------------------------
    def register(self, node: Candidate, outcomes: list[Outcome]) -> Registration:
        kind = AGENT if isinstance(node, Agent) else LLM
        store = self.state.get_store()
        with self.lock:
            self._check_outcomes(store, outcomes)
            backing = self._backing(store, node) if isinstance(node, Agent) else None
            other = LLM if kind == AGENT else AGENT
            if store.has_node(other, node.name):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"name: {node.name!r} is an {WHAT[other]}; an {WHAT[kind]} needs a name of its own",
                )
            if (done := self._registered_already(store, kind, node, outcomes, backing)) is not None:
                return done
            scorer = self.state.scorer
            self._refuse_stale(scorer, node, kind)
            if isinstance(node, LLMNode) and repriced_since_training(scorer, node):
                # deleted and registered again at other prices: every cost stored for it from now on is billed at
                # these, dated as its outcomes are (a start and a retrain then learn its multiplier from them)
                node = dataclasses.replace(node, priced_at=outcomes[0].observed_at if outcomes else utc_now())
            try:
                self._write(
                    store,
                    GraphBatch(llms=[node], outcomes=outcomes)
                    if kind == LLM
                    else GraphBatch(
                        agents=[node],
                        outcomes=outcomes,  # type: ignore[list-item]
                    ),
                    self.change(_REGISTERED[kind], node.name),
                    new=[node],  # refused if another replica or a CLI import registered it since the check above
                )
            except ConflictError:  # with the same data, that is this registration done (as above); other data: 409
                if (done := self._registered_already(store, kind, node, outcomes, backing)) is not None:
                    return done
                raise
            note = self.add_to_scorer(scorer, store, kind, node, backing, outcomes)
            penalised = scorer is not None and scorer.router.penalty((1.0, 0.0)) is not None
            if note is None and kind == LLM and not outcomes and penalised:
                known = "its description only" if node.description.strip() else "no description and no outcomes"
                note = (
                    f"routable from {known}: until outcomes show its skill, the uncertainty penalty ranks it below "
                    f"the known LLMs (GET /v1/llms/{urllib.parse.quote(node.name)}/probes, then POST /v1/outcomes)"
                )
        return Registration(node, True, self.state.routable(node.name), len(outcomes), backing, note)

    def _registered_already(
        self, store: GraphStore, kind: str, node: Candidate, outcomes: list[Outcome], backing: LLMNode | None
    ) -> Registration | None:
        """None if no candidate of the name is stored; else, if stored with the same data, the idempotent answer
        (its outcomes recorded, as POST /v1/outcomes would), and a 409 if with other data."""
        existing = store.get_nodes(kind, [node.name]).get(node.name)
        if existing is None:
            return None
        if not same_registration(existing, node):  # type: ignore[arg-type]
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"{WHAT[kind]} {node.name!r} is already registered with other data; DELETE "
                f"{_PATH[kind]}/{node.name} first to replace it",
            )
        if outcomes:  # as POST /v1/outcomes: logged for the replicas, learned by the scorer at once
            self.record_outcomes(store, GraphBatch(outcomes=outcomes))
        note = None
        if isinstance(node, LLMNode) and _upstream(node) not in (None, _upstream(existing)):  # type: ignore[arg-type]
            note = f"already registered; its upstream was not changed: PATCH /v1/llms/{node.name} to change it"
        return Registration(existing, False, self.state.routable(node.name), len(outcomes), backing, note)  # type: ignore[arg-type]

    @staticmethod
    def _check_outcomes(store: GraphStore, outcomes: list[Outcome]) -> None:
        """A registration's outcomes name stored queries, each once: a 422 naming the first row that does not."""
        stored = store.get_nodes(QUERY, (o.query_id for o in outcomes))
        first: dict[str, int] = {}
        for i, o in enumerate(outcomes):
            if o.query_id not in stored:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"outcomes[{i}].query_id: no stored query {o.query_id!r}; outcomes at registration are on "
                    "stored queries (POST /v1/outcomes adds new ones with their text)",
                )
            if o.query_id in first:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"outcomes[{i}]: the same query as outcomes[{first[o.query_id]}]",
                )
            first[o.query_id] = i

    @staticmethod
    def _backing(store: GraphStore, node: Agent) -> LLMNode:
        if not store.has_node(LLM, node.llm):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"llm: no LLM named {node.llm!r} to back agent {node.name!r}; register it first (POST /v1/llms)",
            )
        llm = store.get_node(LLM, node.llm)
        assert isinstance(llm, LLMNode)
        return llm

    @staticmethod
    def _write(
        store: GraphStore, batch: GraphBatch, change: Change | None = None, new: Sequence[NodeRecord] = ()
    ) -> None:
        """One atomic store write; an outcome naming a query the store does not have is the client's 422."""
        try:
            store.write(batch, change=change, new=new)
        except NodeNotFoundError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"outcomes: {exc}") from None

    def _refuse_stale(self, scorer: Scorer | None, node: Candidate, kind: str) -> None:
        """A candidate deleted while the service ran that its router could not drop is still in the scorer with its
        old data: re-registering it is allowed with that same data only (409 otherwise), unless the router can drop
        it now (the GNN keeps the last candidate it has: one registered since frees it)."""
        if scorer is None or node.name not in scorer.candidates:
            return
        with self.state.lock.write():  # dropped now: registered afresh (not with the deleted one's outcomes)
            if scorer.exclude(node.name, scorer.excluded.get(node.name)):
                return
        if not same_registration(scorer.excluded.get(node.name), node):
            remedy = "restart the service (or retrain)" if kind == LLM else "retrain (POST /v1/train)"
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"{WHAT[kind]} {node.name!r} was deleted while the service ran and the scorer still holds its old "
                f"data; re-register it with the same data, or {remedy} to register other data",
            )

    def add_to_scorer(
        self,
        scorer: Scorer | None,
        store: GraphStore,
        kind: str,
        node: Candidate,
        backing: LLMNode | None,
        outcomes: list[Outcome],
        undo: bool = True,
        undated: bool = False,
    ) -> str | None:
        """Make a candidate just written to the store routable; a note when it is not routable yet. If the scorer
        refuses it and ``undo``, the store write is undone (a replica applying another's change does not undo).
        Only its outcomes' costs billed at the prices it has now set its cost multiplier, as at a start
        (:func:`graphrouter.loading.costs_billed_now`; ``undated``: none of them, billed at other prices until a time
        that is not known)."""
        state = self.state
        if scorer is None:
            return f"stored; the scorer is not loaded ({state.scorer_error}), it will be routable once it is"
        if isinstance(node, Agent) and not state.routable(node.llm):
            return f"stored; its LLM {node.llm!r} is not routable, so neither is the agent until a retrain"
        effects = {o.query_id: o.effect for o in outcomes}
        costs = costs_billed_now(outcomes, backing or node, undated)  # type: ignore[arg-type]
        try:
            with state.lock.write():
                if not scorer.restore(node.name):  # not a re-registration of a deleted one with the same data
                    if isinstance(node, Agent):
                        assert backing is not None
                        scorer.register_agent(node, backing, effects, costs)
                    else:
                        scorer.register_llm(node, effects, costs)
        except NotImplementedError:
            return (
                f"stored; the {scorer.router.name!r} router cannot add a candidate without retraining: "
                "retrain (POST /v1/train) to route to it"
            )
        except Exception:  # refused, or failed: nothing of it stays stored (its request answers the error)
            if undo:
                store.delete_node(kind, node.name, change=self.change(_DELETED[kind], node.name, node_payload(node)))
            raise
        return None

    def set_upstream(self, name: str, base_url: str | None, model: str | None, api_key_env: str | None) -> LLMNode:
        """Replace (or, with ``base_url=None``, remove) an LLM's upstream; routing data and scorer are untouched."""
        store = self.state.get_store()
        with self.lock:
            node = store.get_node(LLM, name)  # 404 if there is none
            assert isinstance(node, LLMNode)
            updated = dataclasses.replace(node, base_url=base_url, upstream_model=model, api_key_env=api_key_env)
            store.upsert([updated])
        return updated

    # ---- deleting -----------------------------------------------------------------------------------------
    def delete(self, kind: str, name: str) -> int:
        """Remove the node and its edges from the store, and the candidate from routing at once. Returns how many
        observed outcomes went with it."""
        store = self.state.get_store()
        with self.lock:
            node = store.get_node(kind, name)  # 404 if there is none
            if kind == LLM:
                agents = [a.key for a in store.list_nodes(AGENT) if isinstance(a, Agent) and a.llm == name]
                if agents:
                    shown = ", ".join(agents[:10]) + (", …" if len(agents) > 10 else "")
                    raise HTTPException(
                        status.HTTP_409_CONFLICT,
                        f"LLM {name!r} backs {len(agents)} agent(s) ({shown}); delete them first (DELETE /v1/agents/…)",
                    )
            outcomes = store.delete_node(kind, name, change=self.change(_DELETED[kind], name, node_payload(node)))  # type: ignore[arg-type]
            self.exclude_candidate(name, node)  # type: ignore[arg-type]
            return outcomes

    def exclude_candidate(self, name: str, node: Candidate | None) -> None:
        scorer = self.state.scorer
        if scorer is not None and name in scorer.candidates:
            with self.state.lock.write():
                scorer.exclude(name, node)

    # ---- replicas -----------------------------------------------------------------------------------------
    def change(self, kind: str, key: str = "", payload: dict[str, Any] | None = None) -> Change:
        """A change record of this replica, to write with the change."""
        return Change(kind, key, payload or {}, origin=self.state.replica_id)
