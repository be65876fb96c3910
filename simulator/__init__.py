"""Alert simulator and load generator: realistic ZTF and LSST nights with a truth table (docs/simulator.md).

from alert_broker.simulator import SimConfig, iter_alerts, simulate
report = simulate(SimConfig(survey="ztf", nights=1, objects=10_000, seed=1), "data/sim")
report = simulate_joint(SimConfig(survey="ztf+lsst", nights=2, objects=5_000, seed=1), "data/joint")
"""

from .config import CLASSES, SimConfig
from .engine import (
    JointSimulationReport,
    JointWorld,
    SimulationReport,
    build_joint_world,
    build_world,
    iter_alerts,
    joint_truth_table,
    simulate,
    simulate_joint,
    truth_table,
)
from .ztf_alerts import Alert

__all__ = [
    "CLASSES",
    "Alert",
    "JointSimulationReport",
    "JointWorld",
    "SimConfig",
    "SimulationReport",
    "build_joint_world",
    "build_world",
    "iter_alerts",
    "joint_truth_table",
    "simulate",
    "simulate_joint",
    "truth_table",
]
