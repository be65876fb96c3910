"""The history order between batches: a batch's region tasks start only once the previous batch's have finished.

With a history store, a batch's region tasks read the light curves the previous batch's region tasks wrote. The
order used to be a graph dependency (each batch's region tasks depended on the previous batch's). Dask keeps a
task as long as any task that depends on it exists, so that chain kept every batch's tasks in the scheduler for the
whole run, with the raw packets inside each decode task: ~100 kB per alert in the driver's process (the scheduler
of a LocalCluster runs there), which a stream of hours fills (a 10-minute stream at 250 alerts/s: 9 GB, killed).

So the driver keeps the order instead: each batch's region tasks are a :class:`RegionStage`, submitted (from a
future's done-callback, at once) when the stage before it has finished. No task waits on a worker for another
batch (a waiting task would be blamed for the deaths of the workers it sits on), and no edge joins two batches, so
the scheduler forgets each batch once the driver has committed it and let go of its futures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class PreviousBatchFailed(RuntimeError):
    """The batch before failed or was cancelled: this one's region tasks are not submitted (they would read a
    history it did not write). The driver submits both again, in order."""


class RegionStage:
    """The region tasks of one batch: submitted by ``launch`` now (:meth:`start`) or once the previous stage has
    finished (``previous.then(stage)``). Thread-safe: callbacks run on the Dask client's callback thread."""

    def __init__(self, launch: Callable[[], list]) -> None:
        self._launch = launch
        self._lock = threading.Lock()
        self._started = (
            threading.Event()
        )  # launched, failed or cancelled: ``futures`` and ``error`` are final
        self.futures: list = []
        self.error: BaseException | None = None
        self._left = 0  # futures not finished yet
        self._finished = False  # every future is done (or the stage failed before launching any)
        self._ok = True  # every future finished without error
        self._next: RegionStage | None = None

    # -- the driver's side -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Submit the region tasks now (the previous stage has finished, or there is none)."""
        with self._lock:
            if self._started.is_set():  # cancelled before its turn
                return
            try:
                self.futures = list(self._launch())
            except Exception as err:  # noqa: BLE001 - the scheduler gone: the driver sees it when it waits
                self.error = err
            self._left = len(self.futures)
            self._started.set()
            futures, failed = self.futures, self.error is not None
        if failed or not futures:
            self._all_done(ok=not failed)
        for fut in futures:
            fut.add_done_callback(self._one_done)

    def then(self, stage: RegionStage) -> None:
        """Start ``stage`` once this one has finished (at once if it has); fail it if this one failed."""
        with self._lock:
            if not self._finished:
                self._next = stage
                return
            ok = self._ok
        _hand_over(stage, ok)

    def fail(self, error: BaseException) -> None:
        """Never submit: the batch is cancelled, or the one before it failed."""
        with self._lock:
            if self._started.is_set():
                return
            self.error = error
            self._started.set()
        self._all_done(ok=False)

    def cancel(self) -> None:
        """The driver gave up on this batch: nothing more is submitted for it, what was submitted is cancelled."""
        self.fail(PreviousBatchFailed("cancelled"))
        for fut in self.futures:
            fut.cancel()

    def wait(self, timeout: float | None = None) -> list:
        """The stage's futures once submitted; raises why it never was."""
        if not self._started.wait(timeout):
            raise TimeoutError("the region tasks were not submitted in time")
        if self.error is not None:
            raise self.error
        return self.futures

    def done(self) -> bool:
        """Every region task has finished (or failed): waiting for the stage returns at once."""
        return self._finished

    # -- callbacks -------------------------------------------------------------------------------------------
    def _one_done(self, fut) -> None:
        with self._lock:
            self._left -= 1
            if fut.status != "finished":
                self._ok = False
            last = self._left == 0
        if last:
            self._all_done(ok=self._ok)

    def _all_done(self, ok: bool) -> None:
        with self._lock:
            self._finished = True
            self._ok = self._ok and ok
            nxt, self._next = self._next, None
            ok = self._ok
        if nxt is not None:
            _hand_over(nxt, ok)


def _hand_over(stage: RegionStage, ok: bool) -> None:
    """The stage before ``stage`` has finished: submit it, or fail it if that one failed."""
    if ok:
        stage.start()
    else:
        stage.fail(PreviousBatchFailed("the previous batch's region tasks failed"))
