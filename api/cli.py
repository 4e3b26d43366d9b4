"""The ``graphrouter`` console script: every command of :mod:`graphrouter.cli`, plus ``serve`` (the REST service).

``serve`` lives here, in the top layer, so that ``graphrouter`` never imports ``api``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphrouter import cli
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
    os.environ.setdefault("GRAPHROUTER_LOAD_IN_BACKGROUND", "1")  # the port opens at once; /ready reports progress
    settings = Settings()
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.workers > 1 and settings.sync_interval <= 0:
        raise SystemExit(
            "--workers > 1 needs the workers to follow each other's changes: set GRAPHROUTER_SYNC_INTERVAL above 0"
        )
    # uvicorn's logging config knows only its own loggers: give the service's ("api") the same handler and level
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": args.log_level.upper(), "propagate": False}
    run_server(
        "api.main:create_app",
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=args.log_level,
        log_config=log_config,
        workers=args.workers,
    )


def add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run the REST service (uvicorn; 127.0.0.1:8000 by default)")
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--checkpoint", type=Path, default=None, help=f"checkpoint file (default {DEFAULT_CHECKPOINT})")
    sv.add_argument("--log-level", default="info")
    sv.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("GRAPHROUTER_WORKERS", "1")),
        help="worker processes (default 1, or $GRAPHROUTER_WORKERS); each is a replica with its own scorer, kept in "
        "step with the others through the store's change log (GRAPHROUTER_SYNC_INTERVAL); works on the embedded "
        "store (one host) and on Neo4j",
    )
    sv.set_defaults(func=cmd_serve, standalone=True)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extra_commands=[add_serve])


if __name__ == "__main__":
    sys.exit(main())
