"""What the OpenAI-compatible proxy (:mod:`api.proxy`) needs around an upstream call: the HTTP client, the
per-key rate limiter, a request's plan of candidates to try, sending it and reading an upstream's answer (whole by
the deadline and within the size limit, or as a stream closed however it ends; ids, SSE events, usage, the key
masked). No routing and no store writes here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import HTTPException, Request, status
from fastapi.responses import Response, StreamingResponse

from api.errors import json_failure
from api.settings import Settings
from api.state import ServiceState
from graph_store import LLM, GraphStore, LLMNode
from graph_store.schema import port_problem
from graphrouter.tokens import count_tokens

log = logging.getLogger("api.proxy")


ROUTING_FIELDS = ("task", "scenario", "weights", "budget", "candidates", "explore")  # /v1/route's, not forwarded
MASK = "***"
HEADER_PREFIX = "x-graphrouter-"


def client_error(code: int, message: str) -> HTTPException:
    return HTTPException(code, message)


def callable_llms(store: GraphStore, settings: Settings) -> list[str]:
    """The stored LLMs the proxy can call (:func:`why_uncallable` has nothing against them), by name: one read of
    every LLM node."""
    return [
        n.name
        for n in store.list_nodes(LLM)
        if isinstance(n, LLMNode) and why_uncallable(n.name, n, LLM, settings) is None
    ]


def why_uncallable(name: str, node: LLMNode | None, kind: str, settings: Settings) -> str | None:
    """Why the proxy cannot call candidate ``name`` (None: it can): an agent, no upstream, or its key
    (:func:`key_problem`)."""
    if kind != LLM:
        return "an agent: the proxy calls LLMs only"
    patch = f"PATCH /v1/llms/{urllib.parse.quote(name)}"
    if node is None or node.base_url is None:
        return f"no upstream configured; set one with {patch}"
    if why := port_problem(node.base_url):  # stored before ports were checked
        return f"its upstream {node.base_url!r} cannot be called: {why}; set another with {patch}"
    return key_problem(node, settings)


def key_problem(node: LLMNode, settings: Settings) -> str | None:
    """What keeps the proxy from sending an LLM's key, the server's to fix (None: nothing): a variable upstreams may
    not use (:meth:`Settings.key_env_problem`; stored by an import, or before the rule existed), or one unset."""
    env = node.api_key_env
    if env is not None and (why := settings.key_env_problem(env)):
        patch = f"PATCH /v1/llms/{urllib.parse.quote(node.name)}"
        return f"its key's environment variable may not be sent upstream: {why}; or name another with {patch}"
    if env is not None and not os.environ.get(env):
        return f"its key's environment variable {env} is not set on the server"
    return None


def warn_refused_key_envs(state: ServiceState, settings: Settings) -> list[str]:
    """At the service's start: log (and return) the stored LLMs whose key variable upstreams may not use, which the
    proxy will not call (LLMs stored before GRAPHROUTER_UPSTREAM_KEY_ENVS existed, or by an import). Nothing if the
    store is not open or does not answer: the service starts all the same."""
    try:
        nodes = state.get_store().list_nodes(LLM)
    except Exception as exc:  # a warning must never keep the service from starting
        log.warning("could not check the stored LLMs' key variables at the start: %s", exc)
        return []
    refused = [
        f"{n.name}: {why}"
        for n in nodes
        if isinstance(n, LLMNode) and n.api_key_env is not None and (why := settings.key_env_problem(n.api_key_env))
    ]
    if refused:
        log.warning(
            "the proxy will not call %d LLM(s) whose key variable it may not send upstream (PATCH their upstreams "
            "before any rollback: an older release would send them): %s",
            len(refused),
            "; ".join(refused[:20]) + ("; …" if len(refused) > 20 else ""),
        )
    return refused


def check_key_env(settings: Settings, api_key_env: str | None) -> None:
    """A 422 if an upstream a request gives (registration, PATCH) names a key variable upstreams may not use."""
    if api_key_env is not None and (why := settings.key_env_problem(api_key_env)):
        raise client_error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"upstream.api_key_env: {why}")


MAX_UPSTREAM_CONNECTIONS = 200  # upstream calls in flight at once, over every key and upstream
POOL_WAIT_S = 5.0  # how long a call waits for one of them before it is answered 503


class ProxyBusy(Exception):
    """Every upstream connection is in use: the proxy's limit, not a failure of the upstream it was to call."""

    def __init__(self) -> None:
        super().__init__(
            f"the proxy has {MAX_UPSTREAM_CONNECTIONS} upstream calls in flight, its limit, and none ended within "
            f"{POOL_WAIT_S:g} s; retry shortly"
        )


def make_client(settings: Settings) -> httpx.AsyncClient:
    """The one upstream client of the service (built in the lifespan): pooled connections, the proxy's timeouts."""
    timeout = httpx.Timeout(settings.proxy_timeout, connect=settings.proxy_connect_timeout, pool=POOL_WAIT_S)
    limits = httpx.Limits(max_connections=MAX_UPSTREAM_CONNECTIONS, max_keepalive_connections=50)
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


async def read_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object of a request body of at most ``max_bytes`` (413 beyond, without reading the rest)."""
    declared = request.headers.get("content-length")
    too_big = f"the request body is larger than {max_bytes:,} bytes (GRAPHROUTER_PROXY_MAX_BODY_BYTES)"
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise client_error(status.HTTP_413_CONTENT_TOO_LARGE, too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise client_error(status.HTTP_413_CONTENT_TOO_LARGE, too_big)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks), parse_constant=_not_a_number, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise client_error(status.HTTP_400_BAD_REQUEST, json_failure(exc)) from None
    if not isinstance(body, dict):
        raise client_error(status.HTTP_400_BAD_REQUEST, "the request body must be a JSON object")
    try:  # forwarded as UTF-8: a lone surrogate escape (e.g. "\\ud800") anywhere in it could not be sent
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise client_error(
            status.HTTP_400_BAD_REQUEST,
            "the request body's JSON has a string that is not valid Unicode (a lone surrogate escape such as "
            "\\ud800); send valid UTF-8 text",
        ) from None
    if body.get("stream") is not None and not isinstance(body["stream"], bool):  # null: not streamed, as OpenAI
        raise client_error(status.HTTP_400_BAD_REQUEST, f"stream: must be true or false, got {body['stream']!r}")
    return body


def _not_a_number(name: str) -> float:
    """``NaN`` and ``Infinity`` are not JSON (Python's parser takes them; the upstream's JSON would not)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _message_text(message: Any) -> str:
    """A chat message's text: its string content, or the text parts of a list of parts ("" if none)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Any) -> str:
    """The text of the last ``user`` message (string content, or the text parts of a list of parts)."""
    if not isinstance(messages, list) or not messages:
        raise client_error(status.HTTP_400_BAD_REQUEST, "messages: a non-empty list of chat messages is required")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _message_text(message)
            if text.strip():
                return text
            raise client_error(status.HTTP_400_BAD_REQUEST, "messages: the last user message has no text to route on")
    raise client_error(
        status.HTTP_400_BAD_REQUEST, 'messages: no user message to route on (give one with "role": "user")'
    )


PROMPT_COUNT_CHARS = 100_000  # a prompt longer than this is counted on its first that many characters, scaled


def prompt_tokens(body: dict[str, Any]) -> int:
    """The input tokens of a whole chat call: every message's text (system, history, the last user message), its
    tool calls' arguments and its ``tools`` schemas, counted as a routed query's are
    (:func:`~graphrouter.tokens.count_tokens`), so its cost is the call's, not its last message's. Images are not
    counted. Past :data:`PROMPT_COUNT_CHARS` characters the count is the first ones' scaled to the whole (counting
    a 1 MB prompt took up to 2 s of CPU)."""
    parts: list[str] = []
    for message in body.get("messages") or []:
        parts.append(_message_text(message))
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                parts.append(function["arguments"])
    if isinstance(body.get("tools"), list):
        parts.append(json.dumps(body["tools"], ensure_ascii=False))
    text = "\n".join(p for p in parts if p)
    if len(text) <= PROMPT_COUNT_CHARS:
        return count_tokens([text])[0] if text else 0
    head = count_tokens([text[:PROMPT_COUNT_CHARS]])[0]
    return int(round(head * len(text) / PROMPT_COUNT_CHARS))


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts of up to that many; 0 disables it."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, when)
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0


def key_id(key: str) -> str:
    """A short, non-reversible name of a key, for rate-limit buckets."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class Attempt:
    """One candidate to try: its node (with its upstream), predicted effect and cost (None on a pass-through the
    scorer does not know)."""

    node: LLMNode
    effect: float | None
    cost: float | None

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class Plan:
    """What a chat request will do: the candidates to try in order, the text and task to record it under."""

    attempts: list[Attempt]
    text: str
    task: str | None
    routed: bool
    failed: list[str] = field(default_factory=list)  # "name (why)" of upstreams that failed
    explored: bool = False  # the first attempt is an exploration's pick, not the argmax
    # the call's input tokens as routing counted them (0: not counted): the recorded outcome is the stored query's,
    # so its input cost is the billed one times the stored text's share of these (what a retrain prices it on)
    prompt_tokens: int = 0

    def headers(self, chosen: Attempt | None) -> dict[str, str]:
        """The ``x-graphrouter-*`` headers of the answer from ``chosen`` (None: every attempt failed, a 502)."""
        out = {f"{HEADER_PREFIX}fallbacks": str(len(self.failed))}
        if chosen is not None:
            out[f"{HEADER_PREFIX}model"] = chosen.name
        if chosen is not None and chosen.effect is not None:
            out[f"{HEADER_PREFIX}effect"] = f"{chosen.effect:.10g}"
        if chosen is not None and chosen.cost is not None:
            out[f"{HEADER_PREFIX}cost"] = f"{chosen.cost:.10g}"
        if self.task is not None:
            out[f"{HEADER_PREFIX}task"] = header_safe(self.task)
        if self.failed:
            out[f"{HEADER_PREFIX}failed"] = header_safe("; ".join(self.failed))
        if self.explored and chosen is not None and chosen is self.attempts[0]:
            out[f"{HEADER_PREFIX}explored"] = "true"
        return out


def header_safe(value: str) -> str:
    return value.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")


class UpstreamFailed(Exception):
    """This upstream could not answer (connection, timeout, 5xx): try the next candidate."""


async def read_capped(upstream: httpx.Response, max_bytes: int) -> bytes:
    """A streamed upstream answer's body, decompressed, of at most ``max_bytes``: :class:`UpstreamFailed` beyond
    (without reading the rest), so a huge answer is never held whole."""
    pieces, n = [], 0
    async for piece in upstream.aiter_bytes():
        n += len(piece)
        if n > max_bytes:
            raise UpstreamFailed(f"an answer larger than {max_bytes:,} bytes (GRAPHROUTER_PROXY_MAX_ANSWER_BYTES)")
        pieces.append(piece)
    return b"".join(pieces)


def past_deadline(settings: Settings) -> UpstreamFailed:
    return UpstreamFailed(f"no whole answer within {settings.proxy_deadline:g} s (GRAPHROUTER_PROXY_DEADLINE)")


async def send(
    client: httpx.AsyncClient, request: httpx.Request, settings: Settings, until: float | None = None
) -> httpx.Response:
    """Send an upstream request, its answer to be streamed (by loop time ``until``, if given: the call's deadline);
    every way it can fail is :class:`UpstreamFailed`, but all connections in use, :class:`ProxyBusy`."""
    try:
        if until is None:
            return await client.send(request, stream=True)
        async with asyncio.timeout_at(until):
            return await client.send(request, stream=True)
    except TimeoutError:  # asyncio's: the deadline
        raise past_deadline(settings) from None
    except httpx.PoolTimeout:
        raise ProxyBusy from None
    except httpx.TimeoutException:
        raise UpstreamFailed("timed out") from None
    except httpx.RequestError as exc:  # transport, decoding
        raise UpstreamFailed(f"{type(exc).__name__}") from None


async def read_whole(upstream: httpx.Response, settings: Settings, until: float) -> bytes:
    """An answer that is not a stream, whole by loop time ``until`` (however steadily it trickles) and at most
    ``GRAPHROUTER_PROXY_MAX_ANSWER_BYTES``, else :class:`UpstreamFailed`; the response is closed either way."""
    try:
        async with asyncio.timeout_at(until):
            return await read_capped(upstream, settings.proxy_max_answer_bytes)
    except TimeoutError:
        raise past_deadline(settings) from None
    except httpx.TimeoutException:
        raise UpstreamFailed("timed out") from None
    except httpx.HTTPError as exc:  # transport, decoding
        raise UpstreamFailed(f"{type(exc).__name__}") from None
    finally:
        await upstream.aclose()


MIN_MASKED_KEY_CHARS = 12  # shorter keys are the dummies local servers take ("1", "ollama"), not secrets


def masked(content: bytes, key: str) -> bytes:
    """An upstream's answer (or one streamed event) with its key replaced by ``***``, should it echo it verbatim.
    Keys shorter than :data:`MIN_MASKED_KEY_CHARS` are left: replacing "1" would break every number of the answer."""
    if len(key) < MIN_MASKED_KEY_CHARS or key.encode() not in content:
        return content
    return content.replace(key.encode(), MASK.encode())


def as_is(content: bytes, upstream: httpx.Response, headers: dict[str, str], key: str) -> Response:
    """An upstream's non-2xx answer as it is (its key masked, should it echo it)."""
    content = masked(content, key)
    media = upstream.headers.get("content-type", "application/json")
    return Response(content, status_code=upstream.status_code, media_type=media, headers=headers)


def new_response_id() -> str:
    """The id of a proxied answer, which keys its pending outcome: always the proxy's own, unique, since upstreams'
    ids need not be (an OpenAI-compatible server may count from 1 after every restart, and a reused id would
    overwrite another call's pending outcome and credit its feedback to the wrong query)."""
    return f"chatcmpl-gr-{uuid.uuid4().hex}"


def event_data(event: bytes) -> str | None:
    """The ``data:`` of one server-sent event (None for comments and events without data)."""
    lines = [line[5:].lstrip() for line in event.decode("utf-8", "replace").split("\n") if line.startswith("data:")]
    return "\n".join(lines) if lines else None


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (prompt, completion))
    return (prompt, completion) if ok else None  # type: ignore[return-value]


class UpstreamStream(StreamingResponse):
    """A streamed answer that closes its upstream response however it ends: a client gone before the first event
    never runs the events' generator (nor its ``finally``), which would hold an upstream connection for good."""

    def __init__(self, upstream: httpx.Response, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._upstream = upstream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()


def error_event(message: str) -> bytes:
    """An SSE event that ends a stream the proxy cannot go on with (OpenAI's error shape)."""
    return b"data: " + json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode() + b"\n\n"
