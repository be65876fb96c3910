"""The history order between batches kept by the driver (pipeline/chain.py): a stage's region tasks are submitted
only once the previous stage's have all finished, never after a failure, never once cancelled."""

from __future__ import annotations

import threading

import pytest

from alert_broker.pipeline.chain import PreviousBatchFailed, RegionStage


class FakeFuture:
    """The part of a Dask future the chain uses; ``finish`` plays the scheduler reporting it."""

    def __init__(self) -> None:
        self.status = "pending"
        self._callbacks: list = []
        self.cancelled = False

    def add_done_callback(self, fn) -> None:
        if self.status != "pending":
            fn(self)
        else:
            self._callbacks.append(fn)

    def finish(self, status: str = "finished") -> None:
        self.status = status
        for fn in self._callbacks:
            fn(self)

    def cancel(self) -> None:
        self.cancelled = True
        self.finish("cancelled")


def _stage(n: int = 2) -> tuple[RegionStage, list[list[FakeFuture]]]:
    launched: list[list[FakeFuture]] = []

    def launch() -> list[FakeFuture]:
        futs = [FakeFuture() for _ in range(n)]
        launched.append(futs)
        return futs

    return RegionStage(launch), launched


def test_the_next_stage_is_submitted_only_when_every_region_task_before_it_has_finished():
    first, first_launched = _stage()
    second, second_launched = _stage()
    first.start()
    first.then(second)
    assert len(first_launched) == 1 and second_launched == []
    first_launched[0][0].finish()
    assert second_launched == [] and not first.done()
    first_launched[0][1].finish()
    assert first.done() and len(second_launched) == 1
    assert second.wait(timeout=0) == second_launched[0]


def test_a_stage_chained_after_a_finished_one_starts_at_once():
    first, first_launched = _stage(1)
    first.start()
    first_launched[0][0].finish()
    second, second_launched = _stage()
    first.then(second)
    assert len(second_launched) == 1


def test_a_failed_stage_fails_the_ones_after_it_without_submitting_them():
    first, first_launched = _stage()
    second, second_launched = _stage()
    third, third_launched = _stage()
    first.start()
    first.then(second)
    second.then(third)
    first_launched[0][0].finish("error")
    first_launched[0][1].finish()
    assert second_launched == [] and third_launched == []
    with pytest.raises(PreviousBatchFailed):
        second.wait(timeout=0)
    with pytest.raises(PreviousBatchFailed):
        third.wait(timeout=0)


def test_a_cancelled_stage_is_never_submitted_and_cancels_what_it_had():
    first, first_launched = _stage()
    second, second_launched = _stage()
    first.start()
    first.then(second)
    second.cancel()
    for fut in first_launched[0]:
        fut.finish()
    assert second_launched == []
    first.cancel()  # already submitted: its futures are cancelled
    assert all(f.cancelled for f in first_launched[0])


def test_waiting_for_a_stage_not_yet_submitted_times_out_rather_than_hangs():
    first, _ = _stage()
    second, _ = _stage()
    first.start()
    first.then(second)
    with pytest.raises(TimeoutError):
        second.wait(timeout=0.01)


def test_the_launch_runs_once_under_racing_callbacks():
    """The last region task's callback (the client's callback thread) and a cancellation (the driver) race."""
    for _ in range(200):
        first, first_launched = _stage(1)
        second, second_launched = _stage()
        first.start()
        first.then(second)
        t = threading.Thread(target=first_launched[0][0].finish)
        t.start()
        second.cancel()
        t.join()
        # either it launched before the cancel (then its futures are cancelled) or never
        assert len(second_launched) <= 1
        if second_launched:
            assert all(f.cancelled for f in second_launched[0])
