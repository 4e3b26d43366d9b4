"""Request limits, as pure ASGI middlewares (no BaseHTTPMiddleware overhead on the routing path).

- :class:`BodyLimitMiddleware`: a body over ``GRAPHROUTER_MAX_BODY_BYTES`` is a 413 ``{"detail": message}``. A
  ``Content-Length`` over the limit is refused before a byte of the body is read; a body without one (chunked) is
  counted as it streams in and refused as soon as it passes the limit, so at most the limit (plus one chunk) is ever
  held in memory.
- :class:`RateLimitMiddleware` (off unless ``GRAPHROUTER_RATE_LIMIT`` is set): a token bucket per client, refilled at
  ``GRAPHROUTER_RATE_LIMIT`` requests per second, holding at most ``GRAPHROUTER_RATE_BURST``; a request finding it
  empty is a 429 with ``Retry-After`` and a message. A client is the API key when the request carries the service's
  key (so writers behind one address do not share a bucket with the open readers), else the client address (behind
  a proxy, run uvicorn with ``--proxy-headers`` so that address is the real client's). ``/health``, ``/ready`` and
  ``/metrics`` are never limited: probes and scrapes must not be refused. Buckets are kept for the
  ``MAX_CLIENTS`` most recently seen clients.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import time
from collections import OrderedDict

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
MAX_CLIENTS = 100_000


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit: FastAPI lets an HTTPException out of its body
    reading as it is (any other error there becomes a 400), and the app's handler answers it as JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit), headers={"Connection": "close"})


def too_large(limit: int) -> str:
    return f"request body too large: the limit is {limit:,} bytes (GRAPHROUTER_MAX_BODY_BYTES)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1  # the server refuses a malformed length itself; count the body as it comes
                if declared > self.max_bytes:
                    await _answer(send, 413, too_large(self.max_bytes), {"Connection": "close"})
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:  # read outside FastAPI's body parsing, and not answered yet
            if started:
                raise
            await _answer(send, 413, too_large(self.max_bytes), {"Connection": "close"})


class TokenBuckets:
    """One token bucket per client key: ``rate`` tokens a second, at most ``burst``; thread-safe, bounded."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0.0 if there was one, else the seconds until there will be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, rate: float, burst: int, api_key: str | None = None) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)
        self._key = api_key.encode() if api_key else None
        self._key_id = "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""

    def client(self, scope: Scope) -> str:
        """The bucket of this request: the service's API key if it carries it, else its client address."""
        if self._key is not None:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, token = value.partition(b" ")
                    if scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), self._key):
                        return self._key_id
        client = scope.get("client")
        return f"ip:{client[0]}" if client else "ip:?"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self.client(scope))
        if wait > 0.0:
            limit = f"{self.buckets.rate:g} requests per second per client (GRAPHROUTER_RATE_LIMIT)"
            detail = f"rate limit: {limit}; retry in {wait:.2f} s"
            await _answer(send, 429, detail, {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        await self.app(scope, receive, send)
