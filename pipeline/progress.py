"""Progress of a night: alerts done, alerts/s, dead letters.

On a terminal, a tqdm bar on stderr. Without one (a pod's log, a CI job, a pipe) a bar's carriage returns make
an unreadable log, so a line is logged instead every ``every_s`` seconds (and at the end)."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("alert_broker.pipeline.progress")


class Progress:
    def __init__(
        self, total: int | None, enabled: bool = True, every_s: float = 30.0, tty: bool | None = None
    ) -> None:
        self.total = total
        self.every_s = every_s
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar = tqdm(total=total, unit="alert", disable=not (enabled and self.tty), dynamic_ncols=True)
        self._done = 0
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._report = None

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int, report) -> None:
        self._done += n
        self._report = report
        self._bar.update(n)
        self._bar.set_postfix(batches=report.n_batches, dead=report.dead_letters, refresh=False)
        now = time.monotonic()
        if self.enabled and not self.tty and now - self._last_line >= self.every_s:
            self._last_line = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """One line of progress: messages done (of the total when known), rate, batches, dead letters."""
        now = time.monotonic() if now is None else now
        rate = self._done / max(now - self._t0, 1e-9)
        of = f"/{self.total}" if self.total else ""
        rep = self._report
        batches = rep.n_batches if rep is not None else 0
        dead = rep.dead_letters if rep is not None else 0
        return f"progress: {self._done}{of} messages, {rate:.1f}/s, {batches} batches, {dead} dead letters"

    def __exit__(self, *exc) -> None:
        self._bar.close()
        if self.enabled and not self.tty and self._done:
            log.info("%s", self.line())
