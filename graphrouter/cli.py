"""The ``graphrouter`` command line: import data, inspect and export the graph.

Heavy libraries (torch, sentence-transformers) are imported only by the subcommands that need them.
Errors the user can fix are printed as one ``error: …`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from graph_store import GraphStore, GraphStoreError, open_store
from graph_store.factory import default_location

EXIT_USAGE = 2


class StepProgress:
    """A progress bar over named steps, shown only when stderr is a terminal."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="step", disable=not sys.stderr.isatty(), leave=True)
        self._started = False

    def __call__(self, message: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str(message)

    def close(self) -> None:
        if self._started:
            self._bar.update(1)
        self._bar.close()


def _print_counts(written: dict[str, int]) -> None:
    print("written: " + ", ".join(f"{v:,} {k}" for k, v in written.items()))


def cmd_import(args: argparse.Namespace, store: GraphStore) -> None:
    from graphrouter import ingest

    if args.what == "dcrouter":
        from graphrouter.datasets.dcrouter import import_dcrouter

        progress = StepProgress(total=6, desc="import dcrouter")
        try:
            written = import_dcrouter(store, args.data_dir, progress)
        finally:
            progress.close()
    elif args.what == "llms":
        written = ingest.import_llms(store, args.file)
    else:
        llms = ingest.read_llm_catalogue(args.llms) if args.llms else None
        written = ingest.import_outcomes(store, args.file, llms=llms, default_source=args.source)
    _print_counts(written)


def cmd_stats(args: argparse.Namespace, store: GraphStore) -> None:
    counts = store.counts()
    if args.json:
        print(json.dumps({"store": args.store_location, "backend": store.backend, "counts": counts}, indent=2))
        return
    print(f"store: {args.store_location} ({store.backend})")
    width = max(len(k) for k in counts)
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>10,}")


def cmd_export(args: argparse.Namespace, store: GraphStore) -> None:
    from graph_store.export import write_export

    limit = args.max_queries
    if limit is None and args.format == "html":
        limit = 200  # a picture of every query is unreadable; say --max-queries to change it
    out = args.output or Path(f"graph.{'json' if args.format == 'json' else args.format}")
    path = write_export(store.snapshot(), args.format, out, max_queries=limit)
    sample = f" (first {limit} queries)" if limit is not None else ""
    print(f"wrote {path}{sample}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrouter", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        dest="store_location",
        default=None,
        help="graph store: a file path (embedded, default .graphrouter/graph.db or $GRAPHROUTER_STORE) or a "
        "bolt:// / neo4j:// URI (credentials from NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = sub.add_parser("import", help="import routing data into the store")
    imp_sub = imp.add_subparsers(dest="what", required=True, metavar="SOURCE")
    dc = imp_sub.add_parser("dcrouter", help="the LLMRouter dcrouter benchmark (6,108 queries × 9 LLMs)")
    dc.add_argument("--data-dir", type=Path, default=Path("../shared/data/LLMRouter"), help="LLMRouter data folder")
    out = imp_sub.add_parser("outcomes", help="outcome rows from JSONL, CSV or Parquet")
    out.add_argument("file", type=Path)
    out.add_argument("--llms", type=Path, help="an LLM catalogue to import in the same batch")
    out.add_argument("--source", default="", help="source label for rows that have none")
    llms = imp_sub.add_parser("llms", help="an LLM catalogue (default_llm.json format, or JSONL)")
    llms.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_import)

    st = sub.add_parser("stats", help="count nodes and edges by type")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_stats)

    ex = sub.add_parser("export", help="write the graph as GraphML, node-link JSON or an HTML picture")
    ex.add_argument("--format", choices=("graphml", "json", "html"), required=True)
    ex.add_argument("-o", "--output", type=Path, help="output file (default graph.<format>)")
    ex.add_argument("--max-queries", type=int, help="keep only this many queries (html default: 200)")
    ex.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.store_location = args.store_location or default_location()
    func: Callable[[argparse.Namespace, GraphStore], None] = args.func
    try:
        with open_store(args.store_location) as store:
            func(args, store)
    except GraphStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; nothing partial was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
