"""The OpenAI-compatible proxy: ``POST /v1/chat/completions`` routes, forwards and records; ``POST /v1/feedback``
completes what it recorded; ``GET /v1/models`` lists what ``model`` may name (api/model_list.py).

**Choosing.** ``model`` names a candidate LLM (plain pass-through to its upstream) or the router: ``"graphrouter"``,
``"graphrouter:<scenario>"`` (balance, performance_first, cost_first), with the optional body fields of
``/v1/route`` (``task``, ``scenario``, ``weights``, ``budget``, ``candidates``, ``explore``; the OpenAI client's
``extra_body``), which are not forwarded; an exploring call explores only among the LLMs it can call. The router
ranks every candidate for the last user message exactly as ``/v1/route`` does (``Scorer.top_k`` under the routing
lock), then tries them in that order, skipping those it cannot call (agents, LLMs without an upstream or whose key's
environment variable is unset), up to ``GRAPHROUTER_PROXY_MAX_ATTEMPTS`` (the plan: api/proxy_plan.py).

**Forwarding.** The body goes upstream as sent, with ``model`` set to the upstream's model id; the answer comes back
unchanged apart from ``model`` (the candidate's name), with headers ``x-graphrouter-model``, ``-effect``, ``-cost``
(predicted), ``-task``, ``-fallbacks`` (how many upstreams failed before it) and ``-failed`` (which, and why). A
connection error, timeout (``GRAPHROUTER_PROXY_TIMEOUT`` of silence, or no whole answer within
``GRAPHROUTER_PROXY_DEADLINE``), an answer over ``GRAPHROUTER_PROXY_MAX_ANSWER_BYTES`` or a 5xx moves on to the next
candidate; a 4xx is returned as it is (nothing else to try: the request itself is wrong). All upstream connections in
use (:data:`~api.upstream.MAX_UPSTREAM_CONNECTIONS`) is a 503, no upstream's failure.
``stream: true`` is passed through event by event; the proxy asks the upstream for
``usage`` in the last chunk (``stream_options.include_usage``) and drops that chunk unless the client asked for it.
Once a stream has begun, a failure ends it (there is no taking back what was sent).

**Recording** (api/proxy_records.py). After the answer is sent (off its latency), a successful call with ``usage``
stores the query (the last user message, a Query node of the task used; a text already stored keeps its node) and a
*pending outcome* keyed by the response's ``id``: the candidate and the cost ``(prompt_tokens × share × input
price + completion_tokens × output price) / 1e6``, ``share`` being the stored query text's part of the call's input
tokens (the outcome is that query's), no effect. Pending outcomes are not outcome edges, so training and the
scorer never see them. ``POST /v1/feedback {"id", "effect"}`` turns one into an outcome edge (source ``proxy``;
feedback sent while its record is still being written waits for it) and passes it to the serving scorer like ``POST
/v1/outcomes``. With ``GRAPHROUTER_STORE_QUERY_TEXTS=false`` the query node holds no text: its id is the hash of the
text (as always), its text a placeholder ``[text not stored] <id>``, its task the task used. A call whose task is
unknown (a pass-through to an LLM the scorer does not route to, without ``task``), or whose upstream sent no
``usage``, is forwarded but not recorded. Recording never fails a call: a store error is logged and the answer
returned.

**Secrets.** Upstream keys are read from the environment at call time and only ever put in the upstream request's
``Authorization`` header: never in the graph, a log line, an error message or ``/metrics``; an upstream's answer
(error or not, each streamed event) is returned with the key masked should it echo it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.errors import RETRY_AFTER_S
from api.proxy_plan import ProxyPlanning
from api.proxy_records import ProxyRecords
from api.registry import CandidateRegistry
from api.state import ServiceState
from api.upstream import (
    HEADER_PREFIX,
    ROUTING_FIELDS,
    Attempt,
    Plan,
    ProxyBusy,
    RateLimiter,
    UpstreamFailed,
    UpstreamStream,
    as_is,
    client_error,
    error_event,
    event_data,
    key_id,
    last_user_text,
    masked,
    new_response_id,
    read_whole,
    send,
)
from graph_store import LLMNode

log = logging.getLogger("api.proxy")


class ChatProxy(ProxyPlanning, ProxyRecords):
    """Routes and forwards chat completions, and records their outcomes (one per app, built in the lifespan)."""

    def __init__(self, state: ServiceState, registry: CandidateRegistry, client: httpx.AsyncClient) -> None:
        self.state = state
        self.registry = registry
        self.client = client
        self.settings = state.settings
        self.limiter = RateLimiter(self.settings.proxy_rate_limit)
        # calls answered whose recording is still being written (after the answer, off its latency): feedback on
        # one of them waits for it instead of missing it
        self._recording: dict[str, threading.Event] = {}
        self._recording_lock = threading.Lock()
        self._callable_cache: tuple[float, list[str]] = (-math.inf, [])  # (when, the LLMs it can call)

    # ---- auth ---------------------------------------------------------------------------------------------
    def authorize(self, presented: str | None, *, admin_too: bool = False) -> str:
        """The id of the proxy key presented (401 if none matches, 429 over its rate limit). ``admin_too``: the
        admin key (GRAPHROUTER_API_KEY) is accepted as well (feedback)."""
        keys = self.settings.proxy_keys()
        if admin_too and self.settings.api_key is not None:
            keys = [*keys, self.settings.api_key.get_secret_value()]
        challenge = {"WWW-Authenticate": "Bearer"}
        if not keys:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "the proxy is disabled: no proxy key is configured; set GRAPHROUTER_PROXY_KEY on the server and send "
                "'Authorization: Bearer <key>'",
                headers=challenge,
            )
        if presented is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing 'Authorization: Bearer <key>' header", headers=challenge
            )
        match = None
        for key in keys:  # compare with every key, so the time taken does not say which one was close
            if secrets.compare_digest(presented.encode(), key.encode()):
                match = key
        if match is None:
            wrong = "wrong proxy key"
            if admin_too:
                wrong = "wrong key: this takes a proxy key (GRAPHROUTER_PROXY_KEY) or the admin key "
                wrong += "(GRAPHROUTER_API_KEY)"
                if not self.settings.proxy_keys():
                    wrong += "; the proxy is disabled (no GRAPHROUTER_PROXY_KEY), so only the admin key"
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, wrong, headers=challenge)
        kid = key_id(match)
        wait = self.limiter.take(kid)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit of {self.settings.proxy_rate_limit} requests per minute for this key "
                "(GRAPHROUTER_PROXY_RATE_LIMIT); retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return kid

    # ---- the chat call ------------------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> Response:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise client_error(status.HTTP_400_BAD_REQUEST, "model: a candidate's name or 'graphrouter' is required")
        # routed on the last user message (a longer one than GRAPHROUTER_MAX_QUERY_CHARS on its first that many
        # characters from its first word: the encoder reads far fewer), priced on the whole prompt, sent whole
        text = last_user_text(body.get("messages"))
        if len(text) > self.settings.max_query_chars:
            text = text.lstrip()[: self.settings.max_query_chars]
        fields = {k: body.pop(k) for k in ROUTING_FIELDS if k in body}
        plan = await run_in_threadpool(self._plan, model, text, fields, body)
        stream = body.get("stream") is True
        for attempt in plan.attempts:
            try:
                if stream:
                    return await self._stream(body, plan, attempt)
                return await self._complete(body, plan, attempt)
            except UpstreamFailed as exc:
                plan.failed.append(f"{attempt.name} ({exc})")
                self.state.metrics.proxied(attempt.name, "failed")
                log.warning("upstream of %s failed: %s", attempt.name, exc)
            except ProxyBusy as exc:  # no upstream's fault, and the next would wait for the same connections
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    str(exc),
                    headers={**plan.headers(None), "Retry-After": RETRY_AFTER_S},
                ) from None
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"every upstream tried failed: {'; '.join(plan.failed)} (GRAPHROUTER_PROXY_MAX_ATTEMPTS="
            f"{self.settings.proxy_max_attempts})",
            headers=plan.headers(None),
        )

    # ---- upstream calls -----------------------------------------------------------------------------------
    @staticmethod
    def _request_parts(body: dict[str, Any], node: LLMNode) -> tuple[str, dict[str, Any], dict[str, str], str]:
        url = node.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
        payload = {**body, "model": node.upstream_model or node.name}
        headers = {"content-type": "application/json", "accept": "application/json"}
        key = os.environ.get(node.api_key_env, "") if node.api_key_env else ""
        if key:
            headers["authorization"] = f"Bearer {key}"
        return url, payload, headers, key

    async def _complete(self, body: dict[str, Any], plan: Plan, attempt: Attempt) -> Response:
        url, payload, headers, key = self._request_parts(body, attempt.node)
        request = self.client.build_request("POST", url, json=payload, headers=headers)
        until = asyncio.get_running_loop().time() + self.settings.proxy_deadline  # for the whole answer
        upstream = await send(self.client, request, self.settings, until)
        content = await read_whole(upstream, self.settings, until)
        if upstream.status_code >= 500:
            raise UpstreamFailed(f"HTTP {upstream.status_code}")
        out_headers = plan.headers(attempt)
        if upstream.status_code >= 300:
            self.state.metrics.proxied(attempt.name, f"upstream_{upstream.status_code // 100}xx")
            return as_is(content, upstream, out_headers, key)
        try:
            answer = json.loads(masked(content, key))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise UpstreamFailed("an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamFailed("an answer that is not a JSON object")
        answer["model"] = attempt.name
        rid = new_response_id()
        answer["id"] = rid
        out_headers[f"{HEADER_PREFIX}response-id"] = rid
        self.state.metrics.proxied(attempt.name, "ok")
        self._will_record(rid)
        task = BackgroundTask(self._record, plan, attempt, rid, answer.get("usage"))  # after the answer is sent
        return JSONResponse(answer, headers=out_headers, background=task)

    async def _stream(self, body: dict[str, Any], plan: Plan, attempt: Attempt) -> Response:
        url, payload, headers, key = self._request_parts(body, attempt.node)
        options = payload.get("stream_options")
        client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if not client_wants_usage:
            payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        headers["accept"] = "text/event-stream"
        request = self.client.build_request("POST", url, json=payload, headers=headers)
        upstream = await send(self.client, request, self.settings)
        out_headers = plan.headers(attempt)
        if upstream.status_code >= 300:  # a whole answer, not a stream: held to the deadline and the size limit
            until = asyncio.get_running_loop().time() + self.settings.proxy_deadline
            content = await read_whole(upstream, self.settings, until)
            if upstream.status_code >= 500:
                raise UpstreamFailed(f"HTTP {upstream.status_code}")
            self.state.metrics.proxied(attempt.name, f"upstream_{upstream.status_code // 100}xx")
            return as_is(content, upstream, out_headers, key)
        self.state.metrics.proxied(attempt.name, "ok")
        out_headers["cache-control"] = "no-cache"
        rid = new_response_id()
        out_headers[f"{HEADER_PREFIX}response-id"] = rid
        return UpstreamStream(
            upstream,
            self._events(upstream, plan, attempt, client_wants_usage, rid, key),
            media_type="text/event-stream",
            headers=out_headers,
        )

    async def _events(
        self, upstream: httpx.Response, plan: Plan, attempt: Attempt, client_wants_usage: bool, rid: str, key: str
    ) -> AsyncIterator[bytes]:
        """The upstream's server-sent events, one by one as they complete, ``id`` (``rid``) and ``model``
        rewritten; the usage-only chunk the proxy asked for is dropped unless the client asked for it too. Records
        after the last event."""
        registered = False
        usage: Any = None
        recorded = False
        buffer = b""
        try:
            async for piece in upstream.aiter_raw():
                buffer += piece.replace(b"\r\n", b"\n")
                limit = self.settings.proxy_max_answer_bytes
                while b"\n\n" in buffer or len(buffer) > limit:
                    event, _, buffer = buffer.partition(b"\n\n")
                    if len(event) > limit:  # one event is taken whole: a larger one ends the stream
                        log.warning("the stream from %s sent an event larger than the limit; ended", attempt.name)
                        self.state.metrics.proxied(attempt.name, "failed")
                        yield error_event(
                            f"the upstream of {attempt.name} sent an event larger than {limit:,} bytes "
                            "(GRAPHROUTER_PROXY_MAX_ANSWER_BYTES)"
                        )
                        return
                    event = masked(event, key)  # should the upstream echo its key
                    data = event_data(event)
                    if data is None:
                        yield event + b"\n\n"
                        continue
                    if data == "[DONE]":
                        yield event + b"\n\n"
                        continue
                    try:
                        chunk = json.loads(data)
                    except (json.JSONDecodeError, RecursionError):
                        yield event + b"\n\n"
                        continue
                    if not isinstance(chunk, dict):
                        yield event + b"\n\n"
                        continue
                    if not registered:
                        registered = True
                        self._will_record(rid)
                    chunk["id"] = rid
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        if not client_wants_usage and not chunk.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                        if not client_wants_usage:
                            chunk.pop("usage")
                    if "model" in chunk:
                        chunk["model"] = attempt.name
                    yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            if buffer.strip():
                yield masked(buffer, key)
            if registered:
                recorded = True
                await run_in_threadpool(self._record, plan, attempt, rid, usage)
        except httpx.HTTPError as exc:  # mid-stream: nothing to fall back to once chunks went out
            log.warning("the stream from %s broke off: %s", attempt.name, type(exc).__name__)
        finally:
            if registered and not recorded:
                self._recorded(rid)
            await upstream.aclose()
