"""A progress bar for a night: alerts done, alerts/s, dead letters (tqdm, on stderr)."""

from __future__ import annotations

from tqdm import tqdm


class Progress:
    def __init__(self, total: int | None, enabled: bool = True) -> None:
        self._bar = tqdm(total=total, unit="alert", disable=not enabled, dynamic_ncols=True, smoothing=0.1)

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int, report) -> None:
        self._bar.update(n)
        self._bar.set_postfix(batches=len(report.batches), dead=report.dead_letters, refresh=False)

    def __exit__(self, *exc) -> None:
        self._bar.close()
