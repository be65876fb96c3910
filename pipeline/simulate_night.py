"""``SOURCE=sim``: a simulated ZTF night written as an archive folder, then read like any other night.

It is also the fallback sample when no SOURCE is given and the real ZTF alerts are not beside the checkout.
The night is generated once per (seed, objects) under ``OUT/sim/`` and reused by later runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alert_broker.pipeline.config import Settings
from alert_broker.simulator import SimConfig, simulate

log = logging.getLogger(__name__)


def simulated_night(settings: Settings) -> list[Path]:
    """The archive folder(s) of the simulated night: one per simulated survey (``--survey``: ztf by default,
    ``lsst``, or ``ztf,lsst`` for the same sky seen by both)."""
    surveys = settings.surveys or ("ztf",)
    if len(surveys) > 1:
        raise ValueError(
            f"SOURCE=sim simulates one survey at a time here (got {', '.join(surveys)}); "
            "use `broker simulate` for a joint night and pass its folders as sources"
        )
    survey = surveys[0]
    folder = Path(settings.out) / "sim" / f"{survey}-seed{settings.sim_seed}-objects{settings.sim_objects}"
    done = folder / ".complete"
    if not done.exists():
        log.info(
            "simulating a %s night (%d objects, seed %d) into %s",
            survey.upper(), settings.sim_objects, settings.sim_seed, folder,
        )  # fmt: skip
        report = simulate(
            SimConfig(survey=survey, nights=1, objects=settings.sim_objects, seed=settings.sim_seed),
            str(folder),
            truth_path=str(folder.parent / f"{folder.name}-truth.parquet"),
        )
        done.write_text(f"{report.alerts} alerts\n")
    return [folder]
