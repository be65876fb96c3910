"""Running the API: ``serve`` (``broker serve``, in the foreground) and :class:`BackgroundServer` (a uvicorn
server in a thread on a free port, for tests, benchmarks and notebooks)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

from alert_broker.api.app import create_app
from alert_broker.api.data import BrokerData


@dataclass
class ServeConfig:
    """Where the data is and where to listen."""

    dsn: str
    lake_url: str
    storage_options: dict = field(default_factory=dict)
    history_order: int = 4
    host: str = "127.0.0.1"
    port: int = 8000
    pool_size: int = 6
    log_level: str = "info"
    catalog_root: str | None = None  # the imported cross-match catalogues (GET /catalogs)

    def data(self) -> BrokerData:
        return BrokerData(
            self.dsn,
            self.lake_url,
            self.storage_options,
            history_order=self.history_order,
            pool_size=self.pool_size,
            catalog_root=self.catalog_root,
        )


class _Stop(Exception):
    """SIGTERM arrived: leave ``serve`` normally, so the caller's cleanup runs (an embedded PostgreSQL stops)."""


def _stop(signum, frame) -> None:
    raise _Stop


def serve(config: ServeConfig) -> None:
    """Serve the API and the explorer until interrupted (Ctrl-C or SIGTERM; either returns normally).

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler that was there
    before it started; by default that kills the process before any ``finally`` or ``with`` of the caller runs,
    so a handler of ours turns it into an exception that ends here."""
    data = config.data()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(
            create_app(data),
            host=config.host,
            port=config.port,
            log_level=config.log_level.lower(),
            proxy_headers=False,
            server_header=False,
        )
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        data.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """``with BackgroundServer(config) as url:`` serves in a thread and stops at the end of the block."""

    def __init__(self, config: ServeConfig):
        if not config.port:
            config.port = free_port(config.host)
        self.config = config
        self.data = config.data()
        app = create_app(self.data)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", server_header=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="broker-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {self.url}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.data.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
