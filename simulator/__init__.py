"""Alert simulator and load generator: realistic ZTF and LSST nights with a truth table (docs/simulator.md).

from alert_broker.simulator import SimConfig, iter_alerts, simulate
report = simulate(SimConfig(survey="ztf", nights=1, objects=10_000, seed=1), "data/sim")
"""

from .config import CLASSES, SimConfig
from .engine import SimulationReport, build_world, iter_alerts, simulate, truth_table
from .ztf_alerts import Alert

__all__ = [
    "CLASSES",
    "Alert",
    "SimConfig",
    "SimulationReport",
    "build_world",
    "iter_alerts",
    "simulate",
    "truth_table",
]
