"""Store locations: credentials never shown (redact), and a bounded wait when the Neo4j server is down."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from graph_store import LLM, GraphBatch, InvalidInputError, LLMNode, StoreUnavailableError, Task, open_store
from graph_store.backends.neo4j_store import Neo4jStore
from graph_store.location import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, parse_bolt_location, redact

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (f"bolt://bob:{SECRET}@127.0.0.1:7687", "bolt://bob:***@127.0.0.1:7687"),
        (
            f"neo4j+s://bob:{SECRET}/x@y@db.example:7687/graph?timeout=1",
            "neo4j+s://bob:***@db.example:7687/graph?timeout=1",
        ),
        ("bolt://bob@127.0.0.1:7687", "bolt://bob@127.0.0.1:7687"),
        ("bolt://127.0.0.1:7687/db", "bolt://127.0.0.1:7687/db"),
        ("/tmp/odd:name@file.db", "/tmp/odd:name@file.db"),
    ],
)
def test_redact_hides_only_the_password(location: str, shown: str) -> None:
    assert redact(location) == shown


def test_a_location_carries_user_password_database_and_timeout() -> None:
    assert parse_bolt_location("bolt://bob:p%40ss@h:1/graph?timeout=0.5") == (
        "bolt://h:1",
        "bob",
        "p@ss",
        "graph",
        "0.5",
    )
    assert parse_bolt_location("neo4j://h?policy=eu") == ("neo4j://h?policy=eu", None, None, None, None)


def test_password_is_in_no_repr_or_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    location = f"bolt://bob:{SECRET}@127.0.0.1:1/graphrouter"  # nothing listens on port 1
    with open_store(location) as store:
        assert isinstance(store, Neo4jStore) and store.timeout == DEFAULT_TIMEOUT_S
        assert SECRET not in repr(store) and "bob:***@127.0.0.1:1" in repr(store)
        for call in (store.ping, lambda: store.get_node(LLM, "x"), store.counts):
            with pytest.raises(StoreUnavailableError) as err:
                call()
            assert SECRET not in str(err.value) and "***" in str(err.value)
    for bad in (f"bolt://bob:{SECRET}@h?timeout=0", f"bolt://bob:{SECRET}@h?timeout=nan", f"nope://bob:{SECRET}@h"):
        with pytest.raises(InvalidInputError) as err:
            open_store(bad)
        assert SECRET not in str(err.value)


def test_ready_and_503_bodies_do_not_show_the_password(tmp_path: Path) -> None:
    from api.main import create_app
    from api.settings import Settings

    settings = Settings(store=f"bolt://bob:{SECRET}@127.0.0.1:1", checkpoint=tmp_path / "none.pt", embedding_cache=None)
    with TestClient(create_app(settings)) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and "127.0.0.1:1" in r.text and SECRET not in r.text, r.text
        r = client.get("/v1/llms")
        assert r.status_code == 503 and SECRET not in r.text, r.text


def test_the_timeout_reaches_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def config(store: Neo4jStore) -> tuple[float, float, float]:
        d = store.driver
        ws = d._default_workspace_config  # noqa: SLF001 - the driver has no public view of its configuration
        return d._pool.pool_config.connection_timeout, ws.connection_acquisition_timeout, ws.max_transaction_retry_time  # noqa: SLF001

    monkeypatch.setenv(TIMEOUT_ENV, "0.75")
    with open_store("bolt://127.0.0.1:1") as store:
        assert store.timeout == 0.75 and config(store) == (0.75, 0.75, 0.75)  # type: ignore[attr-defined]
    with open_store("bolt://127.0.0.1:1?timeout=3") as store:  # the location wins over the environment
        assert store.timeout == 3.0 and config(store) == (3.0, 3.0, 3.0)  # type: ignore[attr-defined]
    monkeypatch.setenv(TIMEOUT_ENV, "-1")
    with pytest.raises(InvalidInputError, match=TIMEOUT_ENV):
        open_store("bolt://127.0.0.1:1")


def test_credentials_in_the_location_log_in(bolt_server) -> None:  # type: ignore[no-untyped-def]
    host = bolt_server.uri.removeprefix("bolt://")
    with open_store(f"bolt://{bolt_server.user}:{bolt_server.password}@{host}/{bolt_server.database}") as store:
        store.ping()
        assert store.database == bolt_server.database  # type: ignore[attr-defined]
        assert bolt_server.password not in repr(store)
    with open_store(f"bolt://{bolt_server.user}:wrong-{SECRET}@{host}/{bolt_server.database}") as store:
        with pytest.raises(StoreUnavailableError) as err:
            store.ping()
        assert SECRET not in str(err.value)


def test_an_outage_gives_store_unavailable_then_fails_fast_without_hanging(tmp_path: Path) -> None:
    """A throw-away server: write, stop it, then reads and writes must fail promptly with StoreUnavailableError."""
    from tests._arcadedb import arcadedb_bolt_server

    bound = 2.0
    hang = 10 * bound  # liveness only: unbounded, the driver retries a write for 30 s and connects for 30 s
    with arcadedb_bolt_server(tmp_path / "arcadedb", heap_size="256m") as server:
        host = server.uri.removeprefix("bolt://")
        store = open_store(f"bolt://{server.user}:{server.password}@{host}/{server.database}?timeout={bound}")
        store.write(GraphBatch(tasks=[Task("t")], llms=[LLMNode("m")]))
        assert store.has_node(LLM, "m")
    try:  # the server is stopped now
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.get_node(LLM, "m")
        assert time.monotonic() - t0 < hang, "the first call after the outage hung"
        # after that failure the store fails fast, without asking the server again within its bound
        for call in [
            lambda: store.write(GraphBatch(llms=[LLMNode("n")])),
            store.counts,
            lambda: store.upsert([LLMNode("o")]),
        ]:
            with pytest.raises(StoreUnavailableError, match="unreachable moments ago; not trying again"):
                call()
        with pytest.raises(StoreUnavailableError):
            store.ping()  # ping always asks the server
        # and through the service: each request on the store is a prompt 503 (no checkpoint is needed for these)
        settings = Settings(
            store="unused", checkpoint=tmp_path / "none.pt", embedding_cache=None, api_key="k", proxy_key="pk"
        )
        outcome = {"query": "q", "task": "t", "candidate": "m", "effect": 1.0, "cost": 0.0}
        with TestClient(create_app(settings, store=store)) as client:
            for method, path, body, key in [
                ("GET", "/v1/llms", None, "k"),
                ("GET", "/v1/llms/m", None, "k"),
                ("POST", "/v1/llms", {"name": "p", "input_price": 1, "output_price": 1}, "k"),
                ("DELETE", "/v1/llms/m", None, "k"),
                ("POST", "/v1/tasks", {"name": "t2"}, "k"),
                ("DELETE", "/v1/tasks/t2", None, "k"),
                ("POST", "/v1/outcomes", {"outcomes": [outcome]}, "k"),
                ("GET", "/v1/models", None, "pk"),
                ("GET", "/v1/graph/stats", None, "k"),
            ]:
                t0 = time.monotonic()
                r = client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 503 and r.headers["Retry-After"], (method, path, r.text)
                assert time.monotonic() - t0 < hang, f"{method} {path} hung before its 503"
    finally:
        store.close()


class _FreezableProxy:
    """A TCP relay in front of the Bolt server that can stop passing bytes, as a server that holds its connections
    open but does not answer (stopped with SIGSTOP, swapping) looks to a client."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.01)
                dst.sendall(data)
        except OSError:
            pass
        finally:  # one side closed: close both, so the other pipe's thread ends too
            for s in (src, dst):
                s.close()


def test_a_ping_to_a_server_that_stops_answering_fails_within_the_bound(bolt_server) -> None:  # type: ignore[no-untyped-def]
    port = int(bolt_server.uri.rsplit(":", 1)[1])
    proxy = _FreezableProxy(port)
    location = f"bolt://{bolt_server.user}:{bolt_server.password}@127.0.0.1:{proxy.port}/{bolt_server.database}"
    with contextlib.closing(proxy.listener), open_store(f"{location}?timeout=1") as store:
        store.ping()  # connected, through the relay
        proxy.frozen.set()
        try:  # (before, this ping waited for as long as the server did not answer)
            with pytest.raises(StoreUnavailableError, match="did not answer a ping within 1 s"):
                store.ping()
            with pytest.raises(StoreUnavailableError, match="did not answer a ping"):  # the same stuck ping
                store.ping()
        finally:
            proxy.frozen.clear()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # answered again once the server does
            try:
                store.ping()
                break
            except StoreUnavailableError:
                time.sleep(0.2)
        else:
            pytest.fail("the store did not answer again after the server did")


def test_a_server_that_answers_but_is_not_serving_is_unavailable_not_an_error(
    bolt_server, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """ArcadeDB stopped in-process keeps its port and refuses every request with a Bolt state error: that is the
    store being unavailable (a 503 and fail-fast), not a bad request (it was a 500 on every read and write)."""
    import neo4j
    from neo4j import exceptions as neo4j_errors

    def refuse(*args: object, **kwargs: object) -> None:
        # what the driver raises for the server's FAILURE answer (hydrated as the driver does it)
        raise neo4j_errors.Neo4jError._hydrate_neo4j(
            code="Neo.ClientError.Request.Invalid", message="BEGIN not expected in state: AUTHENTICATION"
        )

    location = f"bolt://{bolt_server.user}:{bolt_server.password}@{bolt_server.uri.removeprefix('bolt://')}"
    with open_store(f"{location}/{bolt_server.database}?timeout=5") as store:
        store.ping()
        with monkeypatch.context() as m:
            m.setattr(neo4j.Session, "execute_read", refuse)
            m.setattr(neo4j.Session, "execute_write", refuse)
            with pytest.raises(StoreUnavailableError, match="not serving requests: BEGIN not expected in state"):
                store.get_node(LLM, "m")
            with pytest.raises(StoreUnavailableError, match="not trying again"):  # then it fails fast
                store.write(GraphBatch(llms=[LLMNode("n")]))
        store.ping()  # a ping always asks: serving again
        store.write(GraphBatch(llms=[LLMNode("n")]))
        assert store.has_node(LLM, "n")
        store.delete_node(LLM, "n")


def test_the_cli_on_an_unreachable_server_says_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The driver's retry warnings ("Transaction failed and will be retried in 1.0s (Couldn't connect …") reached
    stderr unformatted, and its error spanned two lines."""
    import socket

    from graphrouter.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--store", f"bolt://u:{SECRET}@127.0.0.1:{port}/db?timeout=1", "stats"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Neo4j at bolt://u:***@127.0.0.1"), captured.err
    assert "is unavailable" in lines[0] and SECRET not in captured.err and captured.out == ""
