"""A graceful stop: SIGTERM or SIGINT asks a run to stop after the batches it has in flight.

Why: Kubernetes sends the driver's pod SIGTERM at every rollout, scale-down or node drain, and an operator stops a
continuous run with Ctrl-C. Python's default dies at once on SIGTERM, without running a single ``finally``: the
embedded PostgreSQL and the Dask workers were left running, the run was never recorded as finished, and the
consumer group waited a session timeout for the dead member before handing its partitions on. Nothing was lost
(offsets are committed after the sinks), but the next driver redid the uncommitted batches.

With :class:`StopRequest` the first signal only sets a flag: the driver reads no new batch, finishes and commits
those in flight, closes its consumer (the group rebalances at once), stops its services and writes its report
(status ``stopped``). A second signal stops at once (``KeyboardInterrupt``): what was not committed is replayed by
the next run, as after a crash.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

#: the signals that ask a run to stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Catches :data:`STOP_SIGNALS` while entered (from the main thread; elsewhere it only never fires).

    ``requested`` turns true at the first signal; ``signum`` says which."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process a signal stopped: 128 + the signal's number (130 for SIGINT,
        143 for SIGTERM), so a Kubernetes Job or a script sees that the night did not reach its end."""
        return 128 + (self.signum or 0)

    def request(self, signum: int) -> None:
        """What the first signal does (also callable directly, e.g. by a test or an embedding program)."""
        self.signum = signum
        self._event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - the signal interface
        name = signal.Signals(signum).name
        if self.requested:
            self._restore()
            log.warning(
                "%s again: stopping at once; what was not committed is replayed by the next run", name
            )
            raise KeyboardInterrupt(name)
        self.request(signum)
        log.warning(
            "%s: reading no more alerts; finishing and committing the batches in flight, then stopping "
            "(send %s again to stop at once)",
            name,
            name,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
