"""How fast an outcome moves the next answer: ``POST /v1/outcomes`` on a new or stored query, then ``POST /v1/route``,
in process (FastAPI's TestClient, the service's full path: checks, store write, scorer update), with the GNN serving a
stored graph of ``--size`` queries (dcrouter's, grown with perturbed copies as in bench_api.py; reattached, no
retraining).

    python experiments/bench_online.py --store /path/dcrouter/graph.db [--size 100000] [--posts 50]

Each round routes a never-seen query (its text embedded then, as a client routes before it reports), posts the
picked candidate's outcome with the query's text, and routes it again: the latency of the post, of the post plus
the next route, and whether the candidate's predicted effect changed. Then rounds post a trained LLM's outcome on
one of the store's queries (by id; the GNN's graph holds it, so its candidate state is moved by the changed row's
messages, :meth:`graphrouter.routers.gnn.serving.ServingCache.patched`). A further phase does the same for an LLM
registered through ``POST /v1/llms`` with its description only, whose every outcome refits it
(:meth:`graphrouter.online.OnlineLearner._refit`): rounds at few outcomes, then, after a bulk post of more, rounds
where the refit reads its last ``REFIT_ROWS`` outcomes. Writes experiments/results/bench_online.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_api import copy_store, grow  # noqa: E402
from online import load_world  # noqa: E402

from api.main import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from graph_store.backends.embedded import EmbeddedStore  # noqa: E402
from graphrouter.checkpoint import Checkpoint  # noqa: E402
from graphrouter.embeddings import Embedder  # noqa: E402
from graphrouter.online import REFIT_ROWS  # noqa: E402
from graphrouter.routers.gnn import GnnRouter  # noqa: E402
from graphrouter.scorer import Scorer  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "bench_online.md"
KEY = "bench-key"


@dataclass
class Rounds:
    """Latencies (ms) of measured rounds and whether each changed the posted candidate's prediction."""

    post_ms: list[float] = field(default_factory=list)
    both_ms: list[float] = field(default_factory=list)
    changed: list[bool] = field(default_factory=list)

    def row(self) -> str:
        def stat(ms: list[float]) -> str:
            return f"{statistics.median(ms):.1f} | {np.percentile(ms, 90):.1f}"

        return f"{stat(self.post_ms)} | {stat(self.both_ms)} | {sum(self.changed)} of {len(self.changed)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="an embedded store file holding dcrouter")
    parser.add_argument("--world-cache", type=Path, default=None)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-episodes", type=int, default=None, help="cap the GNN's training (quick checks)")
    parser.add_argument("--new-name", default="bench-new-llm", help="the LLM registered for the second phase")
    args = parser.parse_args()
    import torch
    from fastapi.testclient import TestClient

    torch.set_num_threads(args.threads)
    if not Path(args.store).is_file():
        raise SystemExit(f"--store {args.store}: not an embedded store file (the bench serves a copy of it)")
    world, _ = load_world(args.store, args.world_cache)
    t0 = time.perf_counter()
    recipe = {"max_episodes": args.max_episodes} if args.max_episodes else {}
    router = GnnRouter(seeds=(0,), **recipe).fit(world, np.arange(world.data.n_queries))
    fit_s = time.perf_counter() - t0
    print(f"fitted in {fit_s:.0f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(cache_path=Path(tmp) / "emb.sqlite")
        # the service starts on a copy of the store the GNN was fitted on, so that its start finds every trained LLM
        # as trained (the store holding fewer outcomes of one than it was trained with reads as deleted and
        # registered again: with an empty store, or after the reattach below, the start dropped all but one LLM)
        copy = Path(tmp) / "graph.db"
        copy_store(args.store, copy)
        store = EmbeddedStore(copy)
        scorer = Scorer(Checkpoint(router, embedder.model_name, "", "bench"), embedder)
        app = create_app(
            Settings(store="unused", api_key=KEY, embedding_cache=None), store=store, scorer=scorer, embedder=embedder
        )
        auth = {"Authorization": f"Bearer {KEY}"}
        rng = np.random.default_rng(0)
        tasks = world.data.task_names
        n_cand = len(world.data.candidates)

        def text_of(i: int) -> tuple[str, str]:
            task = tasks[i % len(tasks)]
            return f"question {i} of the online bench about {task}: explain {rng.integers(1e9)} in one line", task

        def one_round(client: TestClient, body: dict, row: dict, name: str | None, out: Rounds | None) -> None:
            """Route ``body``, post ``row`` as the outcome of ``name`` (None: the top pick), route again; timed into
            ``out`` (None: a warm-up round)."""
            before = {c["name"]: c["effect"] for c in client.post("/v1/route", json=body).json()["candidates"]}
            pick = name or next(iter(before))
            t = time.perf_counter()
            r = client.post("/v1/outcomes", json={"outcomes": [{**row, "candidate": pick}]}, headers=auth)
            t_post = time.perf_counter()
            after = client.post("/v1/route", json=body).json()["candidates"]
            t_next = time.perf_counter()
            assert r.status_code == 200 and r.json()["applied_to_scorer"] == 1, r.text
            if out is not None:
                out.post_ms.append(1000 * (t_post - t))
                out.both_ms.append(1000 * (t_next - t))
                out.changed.append({c["name"]: c["effect"] for c in after}[pick] != before[pick])

        def rounds(client: TestClient, start: int, n: int, name: str | None, k: int) -> Rounds:
            """n measured rounds (after 3 warm-up ones) posting the outcome of ``name`` (None: the top pick) on a new
            query."""
            out = Rounds()
            for i in range(start, start + n + 3):
                text, task = text_of(i)
                body = {"query": text, "task": task, "k": k, "scenario": "performance_first"}
                row = {"query": text, "task": task, "effect": float(i % 2), "cost": 0.001}
                one_round(client, body, row, name, out if i >= start + 3 else None)
            return out

        def stored_rounds(client: TestClient, n: int, name: str) -> Rounds:
            """n measured rounds (after 3 warm-up ones) posting ``name``'s outcome on one of the store's queries
            (by id; the GNN's graph holds it with ``name``'s outcome on it), the other effect than the stored one."""
            out = Rounds()
            col = world.data.candidates.index(name)
            for r, q in enumerate(rng.choice(world.data.n_queries, size=n + 3, replace=False)):
                text, task = world.data.query_text[q], tasks[world.data.query_task[q]]
                body = {"query": text, "task": task, "k": n_cand, "scenario": "performance_first"}
                stored = world.data.effect[q, col]
                row = {
                    "query_id": world.data.query_keys[q],
                    "effect": 1.0 - float(np.nan_to_num(stored)),
                    "cost": 0.001,
                }
                one_round(client, body, row, name, out if r >= 3 else None)
            return out

        with TestClient(app) as client:
            if router.trained_names() != set(world.data.candidates):  # a start replaced some (new, same name)
                raise SystemExit(f"the service routes {sorted(router.trained_names())} as trained, not all {n_cand}")
            t0 = time.perf_counter()
            router.reattach(grow(world, args.size))  # serving over a stored graph of that size, after the start
            reattach_s = time.perf_counter() - t0
            print(f"reattached to {args.size:,} stored queries in {reattach_s:.0f}s", flush=True)
            trained = rounds(client, 0, args.posts, None, n_cand)
            on_stored = stored_rounds(client, args.posts, world.data.candidates[0])
            llm = {
                "name": args.new_name,
                "description": "a new general-purpose 70B chat model",
                "input_price": 0.5,
                "output_price": 1.5,
            }
            if args.new_name in world.data.candidates:
                raise SystemExit(f"--new-name {args.new_name} is a trained LLM: name one the store does not hold")
            t = time.perf_counter()
            r = client.post("/v1/llms", json=llm, headers=auth)
            assert r.status_code == 201, r.text  # registered now, from its description only
            register_ms = 1000 * (time.perf_counter() - t)
            t = time.perf_counter()
            router.wait_exact()  # the registration's exact refresh over the stored graph runs in the background
            refresh_s = time.perf_counter() - t
            few = rounds(client, 10_000, args.posts, args.new_name, n_cand + 1)
            bulk = REFIT_ROWS - args.posts - 3
            for lo in range(0, bulk, 250):  # new queries with their outcomes, 250 per request
                rows = []
                for i in range(20_000 + lo, 20_000 + min(bulk, lo + 250)):
                    text, task = text_of(i)
                    rows.append(
                        {
                            "query": text,
                            "task": task,
                            "candidate": args.new_name,
                            "effect": float(i % 3 > 0),
                            "cost": 0.001,
                        }
                    )
                r = client.post("/v1/outcomes", json={"outcomes": rows}, headers=auth)
                assert r.status_code == 200 and r.json()["applied_to_scorer"] == len(rows), r.text
            many = rounds(client, 30_000, args.posts, args.new_name, n_cand + 1)
        store.close()

    text = "\n".join(
        [
            "# Post one outcome → the next answer changed",
            "",
            f"`python experiments/bench_online.py --store <dcrouter store> --size {args.size} --posts {args.posts} "
            f"--threads {args.threads}"
            f"{f' --max-episodes {args.max_episodes}' if args.max_episodes else ''}`: "
            f"the GNN (1 member, fitted on dcrouter's {world.data.n_queries:,} queries in {fit_s:.0f}s) reattached to "
            f"a stored graph of {args.size:,} queries in {reattach_s:.0f}s; in-process service (TestClient), "
            "on a copy of the dcrouter store (embedded; the reattach after its start), the onnx encoder; all "
            f"{len(world.data.candidates)} trained LLMs routed. Each round: route a never-seen query (embedded then), "
            "post its candidate's outcome (alternately 0 and 1) with the query's text, route it again (every "
            "candidate, the new one included); the second row's rounds post by `query_id` on a stored query and route "
            "its text. On a shared 2-core machine with other jobs running.",
            "",
            "| candidate whose outcome is posted | POST /v1/outcomes (one outcome): median (ms) | p90 (ms) | "
            "+ the next POST /v1/route: median (ms) | p90 (ms) | its predicted effect changed |",
            "|---|---:|---:|---:|---:|---:|",
            f"| the top pick (a trained LLM) | {trained.row()} |",
            f"| a trained LLM ({world.data.candidates[0]}), on a stored query it has an outcome on (by `query_id`, "
            f"the other effect) | {on_stored.row()} |",
            f"| a new LLM registered from its description, its outcomes 4–{args.posts + 3} (refitted on each) | "
            f"{few.row()} |",
            f"| the same LLM at {REFIT_ROWS:,} outcomes and more (the refit reads its last {REFIT_ROWS:,}) | "
            f"{many.row()} |",
            "",
            f"Rounds 1–3 of each phase are warm-up, not measured. The new LLM's `POST /v1/llms` took "
            f"{register_ms:.0f} ms; the exact refresh over the stored graph that it starts in the background took "
            f"{refresh_s:.1f} s more, and the new LLM's rounds began after it. Target (issue 13): under 50 ms at 100k "
            "stored queries.",
            "",
        ]
    )
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
