"""The LSST stamp model on the shared data's 207 real Rubin alerts, per version (docs/stamp.md, "LSST"):

- the class each by-eye category gets (``classifiers/stamp/lsst_real.py``: clean sources, trails, artefacts,
  detections with no visible source), and the shares: artefacts called bogus, clean sources called a real class,
  trails called asteroid, "noise" detections called bogus;
- the version's held-out simulation figures from its metadata (without and with its rules).

    python -m bench.bench_stamp_lsst [--data ../shared/data] [--versions 1.0.0] [--models models]
"""

from __future__ import annotations

import argparse
import json

from alert_broker.classifiers.registry import versions as registry_versions
from alert_broker.classifiers.stamp.inference import StampClassifier
from alert_broker.classifiers.stamp.lsst_real import eye_crosstab, eye_summary
from alert_broker.classifiers.stamp.surveys import LSST


def run(data: str, versions: list[str], models: str | None) -> dict:
    out = {}
    for v in versions:
        clf = StampClassifier.load(LSST.model_name, v, root=models)
        table = eye_crosstab(clf, data)
        print(f"\n{LSST.model_name} {v}: real LSST alerts, by-eye category x called class")
        print(table.to_string())
        metrics = clf.metadata.get("metrics", {})
        out[v] = {
            "real_eye": {k: round(x, 3) for k, x in eye_summary(table).items()},
            "heldout": {
                k: {m: round(metrics[k][m], 3) for m in ("balanced_accuracy", "macro_f1")}
                for k in ("heldout_cnn", "heldout_cnn+rules")
                if k in metrics
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument(
        "--versions", default=None, help="comma-separated (default: every version in the registry)"
    )
    p.add_argument("--models", default=None, help="registry root (default: the shipped models)")
    args = p.parse_args(argv)
    versions = (
        args.versions.split(",") if args.versions else registry_versions(LSST.model_name, root=args.models)
    )
    print(json.dumps(run(args.data, versions, args.models), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
