"""Small OpenAI-compatible upstreams for the proxy's tests and benchmark: one Starlette app under uvicorn on a free
127.0.0.1 port, with a behaviour per path prefix (``http://127.0.0.1:PORT/<mode>/v1``):

- ``brief``: as ``ok-…``, its usage the prompt's tokens as the router counts them and a 60-token answer;
- ``ok-<anything>``: answers ``"answer from <mode>"`` with ``usage`` 100 prompt + 50 completion tokens; with
  ``stream: true``, three chunks ``0.25 s`` apart (``Hello``, `` from``, `` <mode>``), then a usage-only chunk if
  ``stream_options.include_usage``, then ``[DONE]``;
- ``fast``: as ``ok`` without the pauses between chunks (the benchmark);
- ``gated-<anything>``: as ``ok``, but after the first chunk it waits (up to 10 s) until the test sets
  ``Upstream.gate``, and records in ``Upstream.gate_opened`` whether the test did: a test that opens the gate when
  the first chunk reaches it shows that chunks are passed on as they come, with no clock involved;
- ``fail500``: a 500; ``bad400``: a 400 with an OpenAI error body; ``echo400``: a 400 echoing the Authorization
  header it got (a careless upstream); ``slow``: answers after 2 s; ``trickle``: a valid answer one byte every 50 ms
  (never silent for long, done after about 15 s); ``huge``: a valid answer (or a streamed event) of about 50 kB;
  ``echo200``: a successful answer (or stream) whose text holds the authorization header it got; ``held``: answers
  once ``Upstream.gate`` is set (at most 10 s).

Every request is logged (mode, headers, body) in ``Upstream.seen``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from graphrouter.tokens import count_tokens

USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
CHUNK_PAUSE_S = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    root: str
    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    gate_opened: list[bool] = field(default_factory=list)

    def url(self, mode: str) -> str:
        return f"{self.root}/{mode}/v1"

    def modes(self) -> list[str]:
        return [mode for mode, _, _ in self.seen]


def _brief_usage(body: dict[str, Any]) -> dict[str, int]:
    """An LLM billing its prompt as the router counts it and answering in 60 tokens (``brief-…`` mode)."""
    prompt = sum(count_tokens([str(m.get("content") or "") for m in body.get("messages", [])]))
    return {"prompt_tokens": prompt, "completion_tokens": 60, "total_tokens": prompt + 60}


def upstream_app(upstream: Upstream) -> Starlette:
    ids = itertools.count()

    async def chat(request: Request) -> Response:
        mode = request.path_params["mode"]
        body = await request.json()
        upstream.seen.append((mode, dict(request.headers), body))
        if mode == "fail500":
            return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, 500)
        if mode == "bad400":
            return JSONResponse(
                {"error": {"message": "max_tokens is too large", "type": "invalid_request_error", "code": None}}, 400
            )
        if mode == "echo400":
            got = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {got}"}}, 401)
        if mode == "slow":
            await asyncio.sleep(2.0)
        if mode == "held":  # until the test opens the gate (at most 10 s)
            upstream.gate_opened.append(await asyncio.to_thread(upstream.gate.wait, 10.0))
        rid = f"chatcmpl-{mode}-{next(ids)}" if mode != "sameid" else "chatcmpl-1"  # sameid: a server reusing ids
        if body.get("stream"):
            echo = request.headers.get("authorization", "") if mode == "echo200" else ""
            return StreamingResponse(_chunks(upstream, rid, mode, body, echo), media_type="text/event-stream")
        answer = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"answer from {mode}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE if mode != "brief" else _brief_usage(body),
        }
        if mode == "echo200":  # a careless upstream echoing the key it got, in a successful answer
            answer["choices"][0]["message"]["content"] = f"you sent {request.headers.get('authorization', '')}"
        if mode == "huge":  # a valid answer of about 50 kB
            answer["choices"][0]["message"]["content"] = "x" * 50_000
        if mode == "trickle":  # a valid answer, a byte every 50 ms: never silent for long, never done soon
            return StreamingResponse(_trickle(json.dumps(answer).encode()), media_type="application/json")
        return JSONResponse(answer)

    return Starlette(routes=[Route("/{mode}/v1/chat/completions", chat, methods=["POST"])])


async def _trickle(data: bytes) -> AsyncIterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]
        await asyncio.sleep(0.05)


async def _chunks(
    upstream: Upstream, rid: str, mode: str, body: dict[str, Any], echo: str = ""
) -> AsyncIterator[bytes]:
    pause = 0.0 if mode == "fast" else CHUNK_PAUSE_S
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": body.get("model")}
    words = ["Hello", " from", f" {mode}"] if not echo else ["you", " sent", f" {echo}"]
    if mode == "huge":  # one event of about 50 kB
        words[2] = " " + "x" * 50_000
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
        last = i == len(words) - 1
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
        if i == 0 and mode.startswith("gated"):
            upstream.gate_opened.append(await asyncio.to_thread(upstream.gate.wait, 10.0))
        elif not last and pause:
            await asyncio.sleep(pause)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\n".encode()
    yield b"data: [DONE]\n\n"


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on 127.0.0.1; yields its root URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    upstream = Upstream(root="")
    with serve_in_thread(upstream_app(upstream)) as root:
        upstream.root = root
        yield upstream
