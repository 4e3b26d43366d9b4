"""Running the app under uvicorn, one process or several workers on one port (``graphrouter serve``)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from api.metrics import MULTIPROC_DIR


class NoDelayConfig(uvicorn.Config):
    def bind_socket(self) -> socket.socket:
        """The listening socket that several workers share, with TCP_NODELAY. uvicorn creates it with protocol 0,
        so asyncio does not set TCP_NODELAY on the connections a worker accepts (it checks for IPPROTO_TCP) and every
        small response waited ~40 ms for the client's delayed ACK (Nagle): /health took 44 ms with ``--workers 2``
        against 1.4 ms with one worker. Accepted sockets inherit the option from the listening one."""
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def run_server(app: str, workers: int = 1, **options: Any) -> None:
    """``uvicorn.run(app, factory=True, workers=…, **options)`` for an import string, with :class:`NoDelayConfig`'s
    socket for workers (uvicorn.run's reload and unix-socket branches are not needed by ``graphrouter serve``)."""
    config = NoDelayConfig(app, factory=True, workers=workers, **options)
    server = uvicorn.Server(config)
    shared = None
    if config.workers > 1 and not os.environ.get(MULTIPROC_DIR):  # the workers' metrics, summed (api/metrics.py)
        shared = os.environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="graphrouter-metrics-")
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()  # spawned: they import prometheus_client anew
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
            del os.environ[MULTIPROC_DIR]
    if config.workers == 1 and not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
