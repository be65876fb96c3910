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


def simulated_night(settings: Settings) -> Path:
    folder = Path(settings.out) / "sim" / f"ztf-seed{settings.sim_seed}-objects{settings.sim_objects}"
    done = folder / ".complete"
    if not done.exists():
        log.info(
            "simulating a ZTF night (%d objects, seed %d) into %s",
            settings.sim_objects,
            settings.sim_seed,
            folder,
        )
        report = simulate(
            SimConfig(survey="ztf", nights=1, objects=settings.sim_objects, seed=settings.sim_seed),
            str(folder),
            truth_path=str(folder.parent / f"{folder.name}-truth.parquet"),
        )
        done.write_text(f"{report.alerts} alerts\n")
    return folder
