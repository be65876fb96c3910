"""StopRequest: the first SIGTERM/SIGINT asks a run to stop, the second stops it at once; handlers restored after."""

from __future__ import annotations

import os
import signal
import time

import pytest

from alert_broker.pipeline.shutdown import StopRequest


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_asks_and_the_second_stops_at_once(sig):
    before = signal.getsignal(sig)
    with StopRequest() as stop:
        assert not stop.requested
        _deliver(sig)  # no exception: the run goes on to finish its batches
        assert stop.requested and stop.signum == sig and stop.exit_status == 128 + sig
        with pytest.raises(KeyboardInterrupt):
            _deliver(sig)
    assert signal.getsignal(sig) is before


def test_handlers_are_restored_when_the_run_ends_without_a_signal():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert {s: signal.getsignal(s) for s in before} == before
    stop.request(signal.SIGTERM)  # what a program embedding the driver may call instead of a signal
    assert stop.requested and stop.exit_status == 143
