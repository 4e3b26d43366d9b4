"""What the chat proxy records, and the feedback that completes it: a mixin of :class:`~api.proxy.ChatProxy`.

After the answer is sent (off its latency), a successful call with ``usage`` stores the query (if new) and a
*pending outcome* keyed by the response's ``id`` (its candidate and cost, no effect yet), under the registry's
lock. ``POST /v1/feedback`` turns one into an outcome edge and passes it to the serving scorer like ``POST
/v1/outcomes``; feedback that arrives while its record is still being written waits for it. Recording never fails a
call: a store error is logged.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from api.proxy_models import FeedbackIn, FeedbackOut
from api.upstream import Attempt, Plan, usage_tokens
from graph_store import LLM, QUERY, GraphBatch, GraphStoreError, InvalidInputError, PendingOutcome, Query
from graph_store import query_id as text_id
from graph_store.changes import now as utc_now
from graphrouter.cost import usd_cost
from graphrouter.outcome_feed import outcome_rows
from graphrouter.tokens import count_tokens

if TYPE_CHECKING:
    from api.registry import CandidateRegistry
    from api.settings import Settings
    from api.state import ServiceState

log = logging.getLogger("api.proxy")


class ProxyRecords:
    """The recording and feedback methods of :class:`~api.proxy.ChatProxy`."""

    if TYPE_CHECKING:  # provided by ChatProxy
        state: ServiceState
        registry: CandidateRegistry
        settings: Settings
        _recording: dict[str, threading.Event]
        _recording_lock: threading.Lock

    def _will_record(self, rid: str) -> None:
        with self._recording_lock:
            self._recording.setdefault(rid, threading.Event())

    def _recorded(self, rid: str) -> None:
        with self._recording_lock:
            event = self._recording.pop(rid, None)
        if event is not None:
            event.set()

    def _record(self, plan: Plan, attempt: Attempt, rid: str, usage: Any) -> None:
        """Store the query (if new) and the call's pending outcome; never fails the call."""
        try:
            self._write_record(plan, attempt, rid, usage)
        finally:
            self._recorded(rid)

    def _write_record(self, plan: Plan, attempt: Attempt, rid: str, usage: Any) -> None:
        if plan.task is None:
            log.info("call %s to %s not recorded: its task is unknown (give task)", rid, attempt.name)
            return
        tokens = usage_tokens(usage)
        if tokens is None:
            log.info("call %s to %s not recorded: the upstream sent no usage", rid, attempt.name)
            return
        node = attempt.node
        qid = text_id(plan.text)
        text = plan.text if self.settings.store_query_texts else f"[text not stored] {qid}"
        # the stored query's outcome: its input cost is the stored text's share of the call's, the tokens a retrain
        # prices it on (a chat's history is not its; a placeholder text is priced as the placeholder it is)
        share = min(count_tokens([text])[0] / plan.prompt_tokens, 1.0) if plan.prompt_tokens > 0 else 1.0
        cost = min(usd_cost(tokens[0] * share, tokens[1], node.input_price, node.output_price), 1_000.0)
        at = utc_now()  # the format the follower's expiry compares (graph_store.changes.now)
        try:
            store = self.state.get_store()
            with self.registry.lock:
                new = [] if store.has_node(QUERY, qid) else [Query(text, plan.task, id=qid)]
                pending = PendingOutcome(rid, qid, node.name, cost, kind=LLM, source="proxy", observed_at=at)
                store.write(GraphBatch(queries=new, pending=[pending]))
        except (GraphStoreError, InvalidInputError) as exc:
            log.warning("call %s to %s not recorded: %s", rid, attempt.name, exc)

    def feedback(self, body: FeedbackIn) -> FeedbackOut:
        """Complete a pending outcome with its effect; the scorer gets it like POST /v1/outcomes' (404 if none)."""
        with self._recording_lock:
            writing = self._recording.get(body.id)
        if writing is not None:  # answered moments ago, its record still being written
            writing.wait(timeout=self.settings.proxy_timeout)
        store = self.state.get_store()
        with self.registry.lock:  # the edge and its change record for the replicas: one transaction, or neither
            outcome = store.complete_pending(body.id, body.effect, utc_now(), change=self.registry.outcomes_change)
            applied = self.registry.pass_outcomes(outcome_rows([outcome]))
        return FeedbackOut(
            id=body.id,
            query_id=outcome.query_id,
            candidate=outcome.target,
            effect=outcome.effect,
            cost=outcome.cost,
            applied_to_scorer=applied > 0,
        )
