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
    """Run the REST service; the app opens the store and loads the checkpoint in its lifespan."""
    import uvicorn
    import uvicorn.config

    from api.settings import Settings

    if args.store_location:
        os.environ["GRAPHROUTER_STORE"] = args.store_location
    if args.checkpoint:
        os.environ["GRAPHROUTER_CHECKPOINT"] = str(args.checkpoint)
    os.environ["GRAPHROUTER_EMBEDDING_BACKEND"] = args.embedding_backend
    os.environ.setdefault("GRAPHROUTER_LOAD_IN_BACKGROUND", "1")  # the port opens at once; /ready reports progress
    settings = Settings()
    # uvicorn's logging config knows only its own loggers: give the service's ("api") the same handler and level
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": args.log_level.upper(), "propagate": False}
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=args.log_level,
        log_config=log_config,
    )


def add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run the REST service (uvicorn; 127.0.0.1:8000 by default)")
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--checkpoint", type=Path, default=None, help=f"checkpoint file (default {DEFAULT_CHECKPOINT})")
    sv.add_argument("--log-level", default="info")
    sv.set_defaults(func=cmd_serve, standalone=True)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extra_commands=[add_serve])


if __name__ == "__main__":
    sys.exit(main())
