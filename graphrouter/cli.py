"""The ``graphrouter`` command line: import data, inspect and export the graph, train, route, register LLMs.

Heavy libraries (torch, sentence-transformers) are imported only by the subcommands that need them.
Errors the user can fix are printed as one ``error: …`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from graph_store import GraphStore, GraphStoreError, open_store
from graph_store.factory import default_location
from graph_store.location import redact
from graphrouter.cli_checkpoint import cmd_probes, cmd_route, cmd_train
from graphrouter.embeddings import DEFAULT_CACHE
from graphrouter.errors import GraphRouterError
from graphrouter.paths import DEFAULT_CHECKPOINT

# a function that adds a subcommand to the parser's subparsers (see main)
AddCommand = Callable[[Any], None]

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
    print("written (new or updated): " + ", ".join(f"{v:,} {k}" for k, v in written.items()))


def cmd_import(args: argparse.Namespace, store: GraphStore) -> None:
    from graphrouter import ingest

    if args.what == "dcrouter":
        from graphrouter.datasets.dcrouter import import_dcrouter

        progress = StepProgress(total=6, desc="import dcrouter")
        try:
            written = import_dcrouter(store, args.data_dir, progress, update=args.update)
        finally:
            progress.close()
    elif args.what == "llms":
        written = ingest.import_llms(store, args.file, update=args.update)
    else:
        llms = ingest.read_llm_catalogue(args.llms) if args.llms else None
        steps = ingest.IMPORT_STEPS - (1 if args.update else 0)
        progress = StepProgress(total=steps, desc=f"import {Path(args.file).name}")
        try:
            written = ingest.import_outcomes(
                store, args.file, llms=llms, default_source=args.source, update=args.update, progress=progress
            )
        finally:
            progress.close()
    _print_counts(written)


def cmd_stats(args: argparse.Namespace, store: GraphStore) -> None:
    counts = store.counts()
    if args.json:
        print(json.dumps({"store": redact(args.store_location), "backend": store.backend, "counts": counts}, indent=2))
        return
    print(f"store: {redact(args.store_location)} ({store.backend})")
    width = max(len(k) for k in counts)
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>10,}")


def cmd_export(args: argparse.Namespace, store: GraphStore) -> None:
    from graph_store.export import write_export

    limit = args.max_queries
    if limit is None and args.format == "html":
        limit = 200  # a picture of every query is unreadable; say --max-queries to change it
    out = args.output or Path(f"graph.{'json' if args.format == 'json' else args.format}")
    if not out.parent.is_dir():  # a mistyped path is not a new folder
        from graphrouter.errors import GraphRouterError

        raise GraphRouterError(f"-o {out}: the folder {out.parent} does not exist; create it first")
    path = write_export(store.snapshot(), args.format, out, max_queries=limit)
    sample = f" (at most {limit} queries: --max-queries N to change)" if limit is not None else ""
    print(f"wrote {path}{sample}")


def cmd_register_llm(args: argparse.Namespace, store: GraphStore) -> None:
    from graph_store import LLM, GraphBatch, LLMNode
    from graphrouter import ingest
    from graphrouter.errors import GraphRouterError
    from graphrouter.model_names import reserved_name

    if why := reserved_name(args.name):
        raise GraphRouterError(why)
    llm = LLMNode(args.name, args.description, args.input_price, args.output_price, args.size_b)
    batch, stored = GraphBatch(llms=[llm]), store.get_nodes(LLM, [llm.name])
    if ingest.reregistered(stored, batch) and not args.update:
        raise GraphRouterError(f"LLM {llm.name!r} is already registered with other data; pass --update to replace it")
    if args.outcomes:
        written = ingest.import_outcomes(store, args.outcomes, llms=[llm], update=args.update, of=llm.name)
    else:
        written = ingest.write_logged(store, batch, stored)
    print(f"registered {llm.name} ({written['outcomes']} outcome(s)); routable from the next `graphrouter route`")


def build_parser(extra_commands: Sequence[AddCommand] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrouter", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        dest="store_location",
        default=None,
        help="graph store: a file path (embedded, default .graphrouter/graph.db or $GRAPHROUTER_STORE) or a "
        "bolt:// / neo4j:// URI (credentials from NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE)",
    )
    parser.add_argument(
        "--embedding-backend",
        choices=("onnx", "torch"),
        default=os.environ.get("GRAPHROUTER_EMBEDDING_BACKEND", "onnx"),
        help="how texts are embedded: onnx (the model exported once, run by onnxruntime; default) or torch "
        "(sentence-transformers); default $GRAPHROUTER_EMBEDDING_BACKEND, else onnx",
    )
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=Path(os.environ.get("GRAPHROUTER_EMBEDDING_CACHE") or DEFAULT_CACHE),
        help=f"SQLite cache of text embeddings; default $GRAPHROUTER_EMBEDDING_CACHE, else {DEFAULT_CACHE}",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = sub.add_parser("import", help="import routing data into the store")
    imp_sub = imp.add_subparsers(dest="what", required=True, metavar="SOURCE")
    dc = imp_sub.add_parser("dcrouter", help="the LLMRouter dcrouter benchmark (6,108 queries × 9 LLMs)")
    dc.add_argument("--data-dir", type=Path, default=Path("../shared/data/LLMRouter"), help="LLMRouter data folder")
    dc.add_argument(
        "--update", action="store_true", help="replace its LLMs stored with other data (without it, they are kept)"
    )
    out = imp_sub.add_parser("outcomes", help="outcome rows from JSONL, CSV or Parquet")
    out.add_argument("file", type=Path)
    out.add_argument("--llms", type=Path, help="an LLM catalogue to import in the same batch")
    out.add_argument("--source", default="", help="source label for rows that have none")
    llms = imp_sub.add_parser("llms", help="an LLM catalogue (default_llm.json format, or JSONL)")
    llms.add_argument("file", type=Path)
    update_help = "replace stored LLMs and queries the file gives other data (without it, such a file is refused)"
    for p in (out, llms):
        p.add_argument("--update", action="store_true", help=update_help)
    imp.set_defaults(func=cmd_import, creates_store=True)

    st = sub.add_parser("stats", help="count nodes and edges by type")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_stats)

    ex = sub.add_parser("export", help="write the graph as GraphML, node-link JSON or an HTML picture")
    ex.add_argument("--format", choices=("graphml", "json", "html"), required=True)
    ex.add_argument("-o", "--output", type=Path, help="output file (default graph.<format>)")
    ex.add_argument("--max-queries", type=int, help="keep only this many queries (html default: 200)")
    ex.set_defaults(func=cmd_export)

    checkpoint = Path(os.environ.get("GRAPHROUTER_CHECKPOINT") or DEFAULT_CHECKPOINT)  # as serve reads it
    ckpt_help = f"checkpoint file (default $GRAPHROUTER_CHECKPOINT, else {DEFAULT_CHECKPOINT})"
    tr = sub.add_parser("train", help="fit a router on the whole stored graph and write a checkpoint")
    tr.add_argument("--router", default=None, help="router name from the registry (default: gnn)")
    tr.add_argument(
        "--params",
        default="{}",
        help='the router\'s settings as JSON, as GRAPHROUTER_TRAIN_PARAMS: e.g. \'{"seeds": [0], "max_episodes": 20}\' '
        "for a quick first checkpoint (default: the router's own)",
    )
    tr.add_argument("--checkpoint", type=Path, default=checkpoint, help=ckpt_help)
    tr.add_argument("--embedding-model", default="all-MiniLM-L6-v2")
    tr.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the model's ops are small, and extra threads spin against other work on a "
        "shared 2-core machine; try 2+ on a quiet, larger one)",
    )
    tr.set_defaults(func=cmd_train)

    rt = sub.add_parser("route", help="top-k candidates for a query")
    rt.add_argument("query")
    rt.add_argument("--k", type=int, default=3, help="how many candidates to list (default 3)")
    rt.add_argument("--scenario", default=None, help="performance_first, balance (default) or cost_first")
    rt.add_argument("--w-effect", type=float, default=None, help="explicit weights instead of a scenario")
    rt.add_argument("--w-cost", type=float, default=None)
    rt.add_argument("--task", default=None, help="the query's task, if known (else inferred)")
    rt.add_argument("--budget", type=float, default=None, help="max USD for this query")
    rt.add_argument("--candidates", default=None, help="comma-separated names to choose among")
    rt.add_argument(
        "--input-tokens",
        type=int,
        default=None,
        help="the input tokens to price, when the prompt you will send is more than the query (default: its own)",
    )
    rt.add_argument(
        "--max-output-tokens",
        type=int,
        default=None,
        help="the call's max_tokens: an LLM's predicted cost is at most the input and this many output tokens",
    )
    rt.add_argument("--checkpoint", type=Path, default=checkpoint, help=ckpt_help)
    rt.add_argument("--embedding-model", default=None)
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_route)

    pr = sub.add_parser(
        "probes", help="the stored queries whose outcomes would tell the router most about an LLM or agent"
    )
    pr.add_argument("name", help="a stored LLM or agent (registered or about to be)")
    pr.add_argument("--k", type=int, default=20, help="how many (1-500; default 20)")
    pr.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random sample within each task (same graph and seed: same probes; default 0)",
    )
    pr.add_argument("--checkpoint", type=Path, default=checkpoint, help=ckpt_help)
    pr.add_argument("--embedding-model", default=None)
    pr.add_argument("--json", action="store_true", help="print a JSON list of {id, text, task}")
    pr.set_defaults(func=cmd_probes)

    rg = sub.add_parser("register-llm", help="add an LLM to the graph; routable at once, without retraining")
    rg.add_argument("name")
    rg.add_argument("--description", required=True)
    rg.add_argument("--input-price", type=float, required=True, help="USD per 1M input tokens")
    rg.add_argument("--output-price", type=float, required=True, help="USD per 1M output tokens")
    rg.add_argument("--size-b", type=float, default=None, help="parameters in billions")
    rg.add_argument(
        "--outcomes", type=Path, default=None, help="observed outcomes of it (import outcomes format; its rows only)"
    )
    rg.add_argument("--update", action="store_true", help="replace an LLM of that name")
    rg.set_defaults(func=cmd_register_llm, creates_store=True)

    for add in extra_commands:
        add(sub)
    _global_options_after_the_command(parser, sub, imp_sub)
    return parser


def _global_options_after_the_command(parser: argparse.ArgumentParser, *subs: argparse._SubParsersAction) -> None:
    """``--store``, ``--embedding-backend`` and ``--embedding-cache`` belong before the command, but a user writes
    ``graphrouter train --embedding-cache FILE`` too: each command (and ``import``'s sources) accepts them as well
    (given there, they win)."""
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert all(type(a) is argparse._StoreAction for a in options), "copy only options that take a value"
    for sub in subs:
        for command in sub.choices.values():
            for action in options:
                command.add_argument(
                    *action.option_strings,
                    dest=action.dest,
                    choices=action.choices,
                    type=action.type,
                    default=argparse.SUPPRESS,
                    metavar=action.metavar,
                    help=argparse.SUPPRESS,  # listed once, by ``graphrouter --help``
                )


def main(argv: Sequence[str] | None = None, extra_commands: Sequence[AddCommand] = ()) -> int:
    """Run one command. ``extra_commands`` add subcommands from a higher layer (``api.cli`` adds ``serve``); one
    whose function takes only the arguments runs without a store opened for it."""
    args = build_parser(extra_commands).parse_args(argv)
    if getattr(args, "standalone", False):  # e.g. serve: the service opens (and reopens) the store itself
        args.func(args)
        return 0
    args.store_location = args.store_location or default_location()
    func: Callable[[argparse.Namespace, GraphStore], None] = args.func
    notes = _notes_to_stderr()
    try:
        # only the commands that write create a missing store file: a mistyped --store is an error for the others
        with open_store(args.store_location, create=getattr(args, "creates_store", False)) as store:
            func(args, store)
    except (GraphStoreError, GraphRouterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError as exc:
        if exc.filename is not None:  # a file the command writes (an export to a FIFO): an error like any other
            print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
            return EXIT_USAGE
        try:  # `graphrouter probes … | head`: the reader has what it wanted; no second error when Python flushes
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor
            pass
        return 141  # as a shell reports a command ended by SIGPIPE
    except OSError as exc:  # a file the command writes or reads (a checkpoint, an export) and the system refused
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; every write is all or nothing (graphrouter stats shows what is stored)", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("graphrouter").removeHandler(notes)
    return 0


def _notes_to_stderr() -> logging.Handler:
    """The library's warnings (a candidate kept out of routing, an embedding cache that fails) as ``note:`` lines on
    stderr, for the length of a command. The Neo4j driver's own (each retry of a transaction) are not shown: an
    unreachable server is one ``error:`` line."""
    driver = logging.getLogger("neo4j")
    if not driver.handlers:
        driver.addHandler(logging.NullHandler())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("graphrouter").addHandler(handler)
    return handler


if __name__ == "__main__":
    sys.exit(main())
