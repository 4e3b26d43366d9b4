"""Shared fixtures: every graph_store backend, for real.

``open_store_fn`` (and ``store``) is parametrised over ``BACKENDS``: an embedded file in a temp folder, and the
Neo4j backend against an ArcadeDB Bolt server that starts once per session (tests/_arcadedb.py). Nothing is skipped:
if the Bolt server cannot start, the Neo4j tests fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graph_store import GraphStore
from graph_store.backends.embedded import EmbeddedStore

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one OpenMP thread (set before torch is imported; inherited by the service subprocesses): the tests' tensors are
# tiny, and on a shared 2-core machine a second spinning thread made the GNN tests 10x slower
os.environ.setdefault("OMP_NUM_THREADS", "1")

BACKENDS = ("embedded", "neo4j")
StoreOpener = Callable[[], GraphStore]


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests._arcadedb import arcadedb_bolt_server

    with arcadedb_bolt_server(tmp_path_factory.mktemp("arcadedb")) as server:
        yield server


def neo4j_opener(server: object) -> StoreOpener:
    """Opens a new Neo4jStore (its own driver) on the session's Bolt server."""
    from graph_store.backends.neo4j_store import Neo4jStore

    def open_() -> GraphStore:
        import neo4j

        driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))  # type: ignore[attr-defined]
        return Neo4jStore(driver, database=server.database, owns_driver=True)  # type: ignore[attr-defined]

    return open_


@pytest.fixture(params=BACKENDS)
def open_store_fn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """A function that opens a fresh handle on one empty store of the parametrised backend."""
    if request.param == "embedded":
        path = tmp_path / "graph.db"
        opener: StoreOpener = lambda: EmbeddedStore(path)  # noqa: E731
    else:
        opener = neo4j_opener(request.getfixturevalue("bolt_server"))
    with opener() as s:
        s.clear()
    yield opener


@pytest.fixture
def store(open_store_fn: StoreOpener) -> Iterator[GraphStore]:
    with open_store_fn() as s:
        yield s


@pytest.fixture(scope="session")
def api_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Path]]:
    """The synthetic world (30 queries per task) and its knn_task and tiny GNN checkpoints, fitted once a session
    (tests/routing_world.py); for API tests that only read the checkpoints."""
    from tests.routing_world import fit_api_checkpoints, make_world

    world = make_world(per_task=30)
    return world, fit_api_checkpoints(world, tmp_path_factory.mktemp("api-checkpoints"))
