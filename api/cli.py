"""The ``graphrouter`` console script: every command of :mod:`graphrouter.cli`, plus ``serve`` (the REST service).

``serve`` lives here, in the top layer, so that ``graphrouter`` never imports ``api``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graph_store import InvalidInputError
from graphrouter import cli
from graphrouter.errors import GraphRouterError
from graphrouter.paths import DEFAULT_CHECKPOINT


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the REST service; the app opens the store and loads the checkpoint in its lifespan.

    With ``--workers N`` uvicorn runs N processes on one port, each building its own app from the import string
    (the settings travel in the environment). Each worker is a replica: a registration, deletion, outcome batch or
    checkpoint made through one reaches the others through the store's change log within
    ``GRAPHROUTER_SYNC_INTERVAL`` seconds. The embedded store allows it on one host (SQLite in WAL mode with a busy
    timeout: one writer at a time, readers beside it); replicas on several hosts need Neo4j."""
    import uvicorn.config

    from api.server import run_server
    from api.settings import Settings

    if args.store_location:
        os.environ["GRAPHROUTER_STORE"] = args.store_location
    if args.checkpoint:
        os.environ["GRAPHROUTER_CHECKPOINT"] = str(args.checkpoint)
    os.environ["GRAPHROUTER_EMBEDDING_BACKEND"] = args.embedding_backend
    os.environ["GRAPHROUTER_EMBEDDING_CACHE"] = str(args.embedding_cache)  # its default is that setting's value
    os.environ.setdefault("GRAPHROUTER_LOAD_IN_BACKGROUND", "1")  # the port opens at once; /ready reports progress
    settings = load_settings(Settings)
    workers = args.workers if args.workers is not None else _env_workers()
    if workers < 1:
        _fail(f"{'--workers' if args.workers is not None else 'GRAPHROUTER_WORKERS'} must be at least 1, got {workers}")
    try:  # a bad store location or time bound is a setting to fix, not an outage to retry
        from graph_store.factory import check_location
        from graph_store.location import TIMEOUT_ENV, store_timeout

        if os.environ.get(TIMEOUT_ENV):
            store_timeout(os.environ[TIMEOUT_ENV])
        check_location(settings.store)
    except InvalidInputError as exc:
        _fail(str(exc))
    try:  # a bad training setting stops the service here, not at its first training
        from api.training import train_router_from

        train_router_from(settings)
    except GraphRouterError as exc:
        _fail(str(exc))
    if workers > 1 and settings.sync_interval <= 0:
        _fail("--workers > 1 needs the workers to follow each other's changes: set GRAPHROUTER_SYNC_INTERVAL above 0")
    _check_store_is_there(settings)
    # uvicorn's logging config knows only its own loggers: give the service's ("api") the same handler and level
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": args.log_level.upper(), "propagate": False}
    run_server(
        "api.main:create_app",
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=args.log_level,
        log_config=log_config,
        workers=workers,
    )


def _check_store_is_there(settings: Any) -> None:
    """Refuse, before the port opens, to serve a checkpoint from an embedded store file that does not exist (the
    app would answer /ready 503 until it is there: ``Settings.store_may_be_created``). Without a checkpoint, an empty
    store is a start (register, import, then POST /v1/train), and is created."""
    from graph_store.factory import embedded_path

    path = embedded_path(settings.store)
    if path is not None and not path.exists() and not settings.store_may_be_created:
        _fail(
            f"no store at {path}, and the checkpoint {settings.checkpoint} was trained on one: check --store (or "
            "GRAPHROUTER_STORE); serving would start on a new, empty store. To start afresh, import the data first "
            "(graphrouter import …), or move the checkpoint away"
        )


def load_settings(settings_class: type[Any]) -> Any:
    """The service's settings from the environment, or one ``error:`` line per bad GRAPHROUTER_* variable (not a
    traceback) and exit status 2."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return settings_class()
    except ValidationError as exc:
        lines = [
            f"error: GRAPHROUTER_{'_'.join(str(p) for p in e['loc'][:1]).upper()}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        ]
        print("\n".join(lines), file=sys.stderr)
    except SettingsError as exc:  # e.g. a JSON setting that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"GRAPHROUTER_{field.group(1).upper()}" if field else "a GRAPHROUTER_* setting"
        print(f"error: {name} is not valid JSON: {exc.__cause__ or exc}", file=sys.stderr)
    raise SystemExit(2)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _env_workers() -> int:
    value = os.environ.get("GRAPHROUTER_WORKERS", "1")
    try:
        return int(value)
    except ValueError:
        _fail(f"GRAPHROUTER_WORKERS must be a whole number of worker processes, got {value!r}")
        raise  # unreachable: _fail exits


def add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run the REST service (uvicorn; 127.0.0.1:8000 by default)")
    sv.add_argument("--host", default=None, help="address to listen on (default GRAPHROUTER_HOST, else 127.0.0.1)")
    sv.add_argument("--port", type=int, default=None, help="port (default GRAPHROUTER_PORT, else 8000)")
    sv.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"checkpoint file (default GRAPHROUTER_CHECKPOINT, else {DEFAULT_CHECKPOINT})",
    )
    sv.add_argument("--log-level", default="info")
    sv.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default 1, or $GRAPHROUTER_WORKERS); each is a replica with its own scorer, kept in "
        "step with the others through the store's change log (GRAPHROUTER_SYNC_INTERVAL); works on the embedded "
        "store (one host) and on Neo4j",
    )
    sv.set_defaults(func=cmd_serve, standalone=True)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extra_commands=[add_serve])


if __name__ == "__main__":
    sys.exit(main())
