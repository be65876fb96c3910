"""The stamp classifier on real alerts, per model version (docs/stamp.md):

- ALeRCE's 51 labelled real stamps (all, with metadata, stamps only), with each version's rules; for a model with a
  second stage these are in-sample (it trained on them): its honest real figures are the out-of-fold ones in its
  metadata (``second_stage.out_of_fold``), printed beside;
- the default ``make run-night`` sample (1166 real alerts): of the first alerts of new objects, the share called
  asteroid, with and without a known solar-system object near (ZTF's ssdistnr / ssnamenr), and without one and
  without history, or near the ecliptic and far from it;
- the sample's real asteroids with ZTF's match hidden (``known_sso_hidden``): the share still called asteroid;
- with ``--reliability PATH``, a reliability diagram of the latest version with a second stage: a held-out
  simulation and the real labelled alerts out of fold (``second_stage.reliability_sets``).

    python -m bench.bench_stamp_real [--data ../shared/data] [--versions 1.1.0,1.2.0] [--models models]
                                     [--reliability docs/img/reliability_stamp.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alert_broker.classifiers.calibration import expected_calibration_error, plot_reliability
from alert_broker.classifiers.stamp.evaluate import (
    evaluate_real_stamps,
    hidden_sso_recall,
    real_night_asteroid_shares,
)
from alert_broker.classifiers.stamp.inference import StampClassifier, set_tf_threads
from alert_broker.classifiers.stamp.second_stage import reliability_sets


def run(root: Path, versions: list[str], models: str | None) -> dict:
    out = {}
    for v in versions:
        clf = StampClassifier.load("stamp_classifier", v, root=models)
        real = evaluate_real_stamps(clf, root)
        out[v] = {
            "second_stage": clf.stacker is not None,
            "real_51_with_rules": {
                subset: round(res["cnn+rules"].balanced_accuracy, 4) for subset, res in real.items()
            },
            "out_of_fold": {
                k: v2.get("balanced_accuracy")
                for k, v2 in clf.metadata.get("second_stage", {}).get("out_of_fold", {}).items()
            },
            "real_night": real_night_asteroid_shares(clf, root),
            "known_sso_hidden": hidden_sso_recall(clf, root),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--versions", default="1.1.0")
    p.add_argument("--models", default=None, help="registry root (default: the shipped models)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reliability", default=None, help="PNG path of a reliability diagram (latest version)")
    args = p.parse_args(argv)
    set_tf_threads(args.threads)
    res = run(Path(args.data), [v for v in args.versions.split(",") if v], args.models)
    print(json.dumps(res, indent=1))
    if args.reliability:
        clf = StampClassifier.load("stamp_classifier", None, root=args.models)
        curves = reliability_sets(clf, Path(args.data))
        for label, (proba, idx) in curves.items():
            acc = float((proba.argmax(axis=1) == idx).mean())
            ece = expected_calibration_error(proba, idx)
            print(f"{label}: n {len(idx)}, accuracy {acc:.3f}, ECE {ece:.3f}")
        title = f"Stamp classifier {clf.metadata.get('version', '')}: second stage + rules"
        print(f"wrote {plot_reliability(curves, args.reliability, title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
