"""Schema-driven fuzzing of the whole API in-process (schemathesis over ASGI, no network): every operation,
writes included (with the key), on a throw-away embedded store holding the synthetic world, the scorer loaded from
a tiny GNN checkpoint. Cases come from the OpenAPI document (valid and invalid ones), with a fixed seed and a
bounded number per operation; every answer must be a documented status with a body matching its schema, and never
a 5xx.

A longer run: ``GRAPHROUTER_FUZZ_EXAMPLES=1000 pytest tests/test_api_fuzz.py`` (examples per operation), or
schemathesis' own command line against a running service (see the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from graph_store import GraphBatch, Outcome
from graph_store.backends.embedded import EmbeddedStore
from graphrouter.world import World
from tests.routing_world import AUTH, make_api_app, populate

EXAMPLES = int(os.environ.get("GRAPHROUTER_FUZZ_EXAMPLES", "25"))
TINY_TRAINING = {"seeds": [0], "max_episodes": 2, "eval_every": 1, "hidden": 8}


@pytest.fixture(scope="module")
def fuzz_app(api_world: tuple[World, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    world, paths = api_world
    folder = tmp_path_factory.mktemp("fuzz")
    checkpoint = folder / "gnn.pt"  # a copy: POST /v1/train replaces it
    shutil.copy(paths["gnn"], checkpoint)
    with EmbeddedStore(folder / "graph.db") as store:
        populate(store, world)
        data = world.data  # outcomes too, so that POST /v1/train can train (tiny) and swap the checkpoint
        store.write(
            GraphBatch(
                outcomes=[
                    Outcome(q, c, float(data.effect[i, j]), float(data.cost[i, j]))
                    for i, q in enumerate(data.query_keys)
                    for j, c in enumerate(data.candidates)
                ]
            )
        )
        yield make_api_app(store, world, folder, checkpoint=checkpoint, train_params=TINY_TRAINING)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: FastAPI) -> Iterator[Any]:
    yield schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan running between requests


def not_a_server_error(ctx: object, response: Any, case: object) -> bool:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _fuzz(operation: Any, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # a fixed seed: the same cases on every run
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    run()


def test_no_server_error_and_every_answer_as_documented(fuzz_schema: Any, fuzz_app: FastAPI) -> None:
    """Each operation in turn, valid cases then invalid ones; all failures are collected and reported together."""
    failures = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode)
            except Unsatisfiable:  # nothing of it to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # noqa: BLE001  (a failing check raises; report them all)
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:2_000])
    assert not failures, "\n\n".join(failures)
    counts: dict[str, float] = {}
    for sample in (s for m in fuzz_app.state.metrics.requests.collect() for s in m.samples):
        if sample.name.endswith("_total"):
            counts[sample.labels["status"]] = counts.get(sample.labels["status"], 0) + sample.value
    print(f"fuzzing: {sum(counts.values()):.0f} requests by status {dict(sorted(counts.items()))}")
    assert sum(counts.values()) >= 10 * len(operations) and not any(code >= "500" for code in counts)
