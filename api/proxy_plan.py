"""How the chat proxy plans a call: the candidates to try, in ranking order (or the one named), their upstreams, and
the whole call's input tokens to price; a mixin of :class:`~api.proxy.ChatProxy`. One thread-pool hop per call
(:meth:`ProxyPlanning._plan`) for tokenizer, scorer and store."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import status
from pydantic import TypeAdapter, ValidationError

from api import routing
from api.errors import field_name
from api.models import RouteRequest
from api.types import Name
from api.upstream import Attempt, Plan, callable_llms, client_error, key_problem, prompt_tokens, why_uncallable
from graph_store import LLM, LLMNode
from graphrouter.model_names import ROUTER_MODEL, is_router_model
from graphrouter.rewards import SCENARIOS
from graphrouter.route_request import MAX_INPUT_TOKENS
from graphrouter.route_result import RouteResult
from graphrouter.tokens import count_tokens

if TYPE_CHECKING:
    from api.registry import CandidateRegistry
    from api.settings import Settings
    from api.state import ServiceState

NODE_READ = 16  # ranked candidates whose nodes a routed chat call reads at once (a round trip each, over Bolt)
CALLABLE_TTL_S = 1.0  # how long an exploring call may reuse the list of LLMs the proxy can call (a full LLM read)
_TASK = TypeAdapter(Name)  # a pass-through's task, checked as every name is
EVERY = 2**31 - 1  # k of a routed chat call: every candidate, ranked (the scorer returns at most what there is)


def shown(items: list[str], limit: int = 10) -> str:
    """At most ``limit`` of ``items``, '; '-joined, and how many more (an error over 1,000 candidates stays short)."""
    more = f"; … and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _positive_int(value: Any) -> int | None:
    """``value`` if it is an integer of at least 1 (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


class ProxyPlanning:
    """The planning methods of :class:`~api.proxy.ChatProxy`."""

    if TYPE_CHECKING:  # provided by ChatProxy
        state: ServiceState
        registry: CandidateRegistry
        settings: Settings
        _callable_cache: tuple[float, list[str]]

    def _plan(self, model: str, text: str, fields: dict[str, Any], body: dict[str, Any]) -> Plan:
        """Rank (or look up) the candidates and their upstreams, pricing the whole call (``body``: its messages and
        tools): one thread-pool hop for tokenizer, scorer and store."""
        store = self.state.get_store()
        if is_router_model(model):
            scenario = model[len(ROUTER_MODEL) + 1 :] or None
            if scenario is not None and "scenario" in fields:
                raise client_error(status.HTTP_400_BAD_REQUEST, "scenario: give it in model or in the body, not both")
            if scenario is not None and scenario not in SCENARIOS:
                ids = ", ".join(f"{ROUTER_MODEL}:{s}" for s in SCENARIOS)
                raise client_error(
                    status.HTTP_400_BAD_REQUEST, f"model: unknown {model!r}; use {ROUTER_MODEL}, {ids} or an LLM's name"
                )
            fields, prompt = self._priced(text, {**fields, "scenario": scenario or fields.get("scenario")}, body)
            if fields.get("explore") is True or (fields.get("explore") is None and self.settings.explore_default):
                fields["candidates"] = self._callable(store, fields.get("candidates"))
            result = self._route(text, fields, k=None)
            attempts, skipped, keys = [], [], []  # keys: whether each skipped LLM's only fault is its key
            nodes: dict[str, Any] = {}
            for i, rec in enumerate(result.candidates):
                if i % NODE_READ == 0:  # the LLM nodes of the next few in ranking order: one store read
                    nodes = store.get_nodes(
                        LLM, [r.name for r in result.candidates[i : i + NODE_READ] if r.kind == LLM]
                    )
                node = nodes.get(rec.name) if rec.kind == LLM else None
                why = why_uncallable(rec.name, node, rec.kind, self.settings)
                if why:
                    skipped.append(f"{rec.name} ({why})")
                    if rec.kind == LLM:  # (an agent is never called, whatever the server's keys)
                        keys.append(node is not None and why == key_problem(node, self.settings))
                    continue
                assert isinstance(node, LLMNode)
                attempts.append(Attempt(node, rec.effect, rec.cost))
                if len(attempts) == self.settings.proxy_max_attempts:
                    break
            if not attempts:  # as for a named LLM: only unusable keys are the server's to fix (503)
                code = status.HTTP_503_SERVICE_UNAVAILABLE if keys and all(keys) else status.HTTP_400_BAD_REQUEST
                fix = "set (or allow) their keys' variables on the server" if code == 503 else "give an LLM an upstream"
                raise client_error(
                    code,
                    f"no candidate the router ranked can be called: {shown(skipped)}; {fix} "
                    "(PATCH /v1/llms/{name} sets an LLM's upstream and key variable)",
                )
            explored = result.explored and attempts[0].name == result.candidates[0].name
            if result.candidates:
                self.state.metrics.decided(attempts[0].name, LLM)
                if explored:
                    self.state.metrics.explored(attempts[0].name, LLM, result.extra_cost)
            return Plan(attempts, text, result.task, routed=True, explored=explored, prompt_tokens=prompt)
        # a concrete candidate: pass-through
        if not store.has_node(LLM, model):
            raise client_error(
                status.HTTP_404_NOT_FOUND,
                f"model: no LLM named {model!r}; use a registered LLM's name (GET /v1/llms) or 'graphrouter'",
            )
        node = store.get_node(LLM, model)
        assert isinstance(node, LLMNode)
        why = why_uncallable(model, node, LLM, self.settings)
        if why:  # its key: the server's to fix (503); no usable upstream: the caller named what cannot be called
            server_side = why == key_problem(node, self.settings)
            code = status.HTTP_503_SERVICE_UNAVAILABLE if server_side else status.HTTP_400_BAD_REQUEST
            raise client_error(code, f"model: LLM {model!r} cannot be called: {why}")
        scorer = self.state.scorer
        fields, prompt = self._priced(text, fields, body)
        if scorer is not None and scorer.routable(model):
            result = self._route(text, {**fields, "candidates": [model]}, k=1)
            rec = result.candidates[0]
            return Plan([Attempt(node, rec.effect, rec.cost)], text, result.task, routed=False, prompt_tokens=prompt)
        task = self._task(fields.get("task"))
        return Plan([Attempt(node, None, None)], text, task, routed=False, prompt_tokens=prompt)

    @staticmethod
    def _priced(text: str, fields: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The routing fields with the whole call's input tokens to price (at least the routed text's) and its cap
        on output tokens (``max_completion_tokens``, else ``max_tokens``, if a positive integer: the upstream refuses
        any other; times ``n``, the choices asked for, each up to the cap), and the input tokens."""
        whole = max(prompt_tokens(body), count_tokens([text])[0])
        priced = {**fields, "input_tokens": min(whole, MAX_INPUT_TOKENS)}
        cap = _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens"))
        if cap is not None:
            priced["max_output_tokens"] = min(cap * (_positive_int(body.get("n")) or 1), MAX_INPUT_TOKENS)
        return priced, whole

    @staticmethod
    def _task(task: Any) -> str | None:
        """The ``task`` of a pass-through to an LLM the scorer does not route (no route request checks it there): a
        name by the rule of every name, or a 422 before the upstream is called (it is sent back in a header, where a
        NUL dropped the connection after the upstream had answered)."""
        if task is None:
            return None
        try:
            return _TASK.validate_python(task)
        except ValidationError as exc:
            raise client_error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"task: {exc.errors()[0]['msg']}") from None

    def _callable(self, store: Any, asked: Any) -> Any:
        """The LLMs an exploring chat call may go to: those the proxy can call (of ``asked``, the body's filter, if
        it gave a list). Exploration's pick must be callable, or its budget would be spent on a candidate the
        proxy then skips (and a new LLM without an upstream, quizzed first, would take every exploration)."""
        scorer = self.registry.get_scorer()
        at, cached = self._callable_cache
        if time.monotonic() - at > CALLABLE_TTL_S:  # one LLM list read per second, not per exploring call
            cached = callable_llms(store, self.settings)
            self._callable_cache = (time.monotonic(), cached)
        names = [n for n in cached if scorer.routable(n)]
        if isinstance(asked, list):  # a name the scorer does not know (or not a name) stays, for the route's own 4xx
            callable_ = set(names)
            names = [n for n in asked if not isinstance(n, str) or n in callable_ or not scorer.routable(n)]
        # none to narrow to: the ranking's candidates are then each skipped, and the answer says why (400 or 503)
        return names or asked

    def _route(self, text: str, fields: dict[str, Any], k: int | None) -> RouteResult:
        """Route as /v1/route does (api/routing.py: its task checks and exploration default); ``k=None``: every
        candidate in the pool, ranked (the fallbacks)."""
        try:
            req = RouteRequest(query=text, k=1, **fields)
        except ValidationError as exc:
            where = {"query": "messages (the last user message)"}  # the chat body's own name for what was routed
            fields = [field_name(("body", *e["loc"])) for e in exc.errors()]  # as a body's: candidates[0]
            detail = "; ".join(f"{where.get(f, f)}: {e['msg']}" for f, e in zip(fields, exc.errors(), strict=True))
            raise client_error(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
        except TypeError as exc:
            raise client_error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        return routing.route(req, self.state, self.registry.get_scorer(), k=EVERY if k is None else k)
