"""Run ArcadeDB with its Bolt plugin as a stand-in Neo4j server for the tests (see DESIGN.md).

Neo4j itself cannot be installed on these machines; the ``arcadedb-embedded`` wheel can, and its Bolt plugin
speaks enough Neo4j 5 for the Neo4j backend. The server runs in a child Python process, not in the test
process, so that

- its JVM (a 2 GB heap here, JPype, non-daemon threads) stays out of pytest and cannot clash with any other JVM
  user in the test process;
- its log output goes to ``<root>/arcadedb.log`` instead of the test output (``java.util.logging`` is also set
  to WARNING, and its file handler, which would write ``./log/`` under the current directory, is dropped);
- it stops when the test process dies, even on ``kill -9``: the child watches its stdin and shuts down on EOF.

Usage (session-scoped, start once per test session)::

    with arcadedb_bolt_server(tmp_path_factory.mktemp("arcadedb")) as server:
        driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
        ...  # database=server.database

This file is also the child's entry point: ``python tests/_arcadedb.py serve ROOT HEAP_SIZE [JVM_ARG ...]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DATABASE = "graphrouter"
USER = "root"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
READY_FILE = "ready.json"
LOG_FILE = "arcadedb.log"
# java.util.logging configuration for the server's JVM: warnings and errors to stderr (the log file above), no
# FileHandler (ArcadeDB's default one writes ./log/arcadedb.log.* relative to the working directory).
JUL_CONFIG = """\
handlers = java.util.logging.ConsoleHandler
.level = WARNING
com.arcadedb.level = WARNING
io.undertow.level = SEVERE
org.xnio.level = SEVERE
org.jboss.level = SEVERE
java.util.logging.ConsoleHandler.level = WARNING
java.util.logging.ConsoleHandler.formatter = java.util.logging.SimpleFormatter
java.util.logging.SimpleFormatter.format = %1$tF %1$tT %4$s [%3$s] %5$s%6$s%n
"""


@dataclass(frozen=True)
class BoltServer:
    """Where a running ArcadeDB Bolt server listens, and how to log in."""

    uri: str
    user: str
    password: str
    database: str
    http_port: int = 0
    log_path: Path | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_for_bolt(server: BoltServer, deadline: float) -> None:
    """Return once the server answers a query on its database over Bolt."""
    import neo4j
    from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
                driver.execute_query("RETURN 1 AS ok", database_=server.database)
            return
        except (ServiceUnavailable, SessionExpired, Neo4jError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"ArcadeDB Bolt server at {server.uri} did not answer in time: {last!r}")


@contextlib.contextmanager
def arcadedb_bolt_server(root: Path, *, heap_size: str = "2g", jvm_args: Sequence[str] = ()) -> Iterator[BoltServer]:
    """Start ArcadeDB with the Bolt plugin on 127.0.0.1 (free ports) under ``root``; stop it on exit.

    The database ``graphrouter`` is created and answers over Bolt before this yields. The server's log is in
    ``root / "arcadedb.log"``. ``heap_size`` and ``jvm_args`` go to the server's JVM.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    password = "arcade-" + secrets.token_hex(8)
    ready = root / READY_FILE
    ready.unlink(missing_ok=True)
    log_path = root / LOG_FILE
    env = dict(os.environ)
    env.pop("ARCADEDB_JVM_ARGS", None)  # the child sets its own JVM options
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "serve", str(root), heap_size, *jvm_args],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, "ARCADEDB_TEST_ROOT_PASSWORD": password},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"ArcadeDB server exited with status {proc.returncode} before it was ready; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"ArcadeDB server did not start in {START_TIMEOUT_S:.0f} s; log {log_path}")
            time.sleep(0.05)
        info = json.loads(ready.read_text(encoding="utf-8"))
        server = BoltServer(
            uri=f"bolt://127.0.0.1:{info['bolt_port']}",
            user=USER,
            password=password,
            database=DATABASE,
            http_port=int(info["http_port"]),
            log_path=log_path,
        )
        _wait_for_bolt(server, deadline)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the child to stop (EOF on its stdin), then terminate or kill it if it does not."""
    if proc.poll() is None and proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    elif proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()


# ---- the child process ----------------------------------------------------------------------------------------
def _serve(root: Path, heap_size: str, jvm_args: list[str]) -> int:
    """Start the server, create the database, write ``ready.json``; stop when stdin reaches EOF."""
    password = os.environ["ARCADEDB_TEST_ROOT_PASSWORD"]
    jul = root / "jul-logging.properties"
    jul.write_text(JUL_CONFIG, encoding="utf-8")

    import arcadedb_embedded as arcadedb

    jvm_kwargs = {
        "heap_size": heap_size,
        "jvm_args": [f"-Djava.util.logging.config.file={jul}", f"-XX:ErrorFile={root}/hs_err_pid%p.log", *jvm_args],
    }
    srv = None
    for attempt in range(5):  # a free port may be taken between choosing and binding it: retry with others
        http_port, bolt_port = _free_port(), _free_port()
        config = {
            "host": "127.0.0.1",
            "http_port": http_port,
            "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "bolt_port": bolt_port,
        }
        candidate = arcadedb.ArcadeDBServer(
            str(root / "server"), root_password=password, config=config, jvm_kwargs=jvm_kwargs
        )
        try:
            candidate.start()
        except arcadedb.ArcadeDBError:
            if attempt == 4:
                raise
            time.sleep(0.5)
            continue
        srv = candidate
        break
    assert srv is not None
    try:
        srv.create_database(DATABASE)
        tmp = root / (READY_FILE + ".tmp")
        tmp.write_text(json.dumps({"bolt_port": bolt_port, "http_port": http_port, "pid": os.getpid()}))
        os.replace(tmp, root / READY_FILE)
        print(f"ready: bolt 127.0.0.1:{bolt_port}, http 127.0.0.1:{http_port}", flush=True)
        sys.stdin.buffer.read()  # blocks until the parent closes the pipe, or dies
    finally:
        srv.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "serve":
        sys.exit("usage: python tests/_arcadedb.py serve ROOT HEAP_SIZE [JVM_ARG ...]")
    sys.exit(_serve(Path(sys.argv[2]), sys.argv[3], sys.argv[4:]))
