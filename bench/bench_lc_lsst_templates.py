"""The LSST light-curve model on real ZTF light curves seen by Rubin, per version (docs/classifiers.md, "LSST"):

- every version of ``lc_hierarchical_lsst`` that never saw a template (1.0.0: simulation only) scores the
  template rows of ``crossval.lsst_template_rows`` (seed 1, as ``make models`` trains 1.1.0 on them);
- a version trained on them is reported by its own out-of-fold figures (its metadata: a parent object's
  resamplings scored by a fold model that saw none of them), never by scoring rows it trained on;
- every version on the same held-out simulated LSST objects (seed 1001, as ``make models`` holds out).

    python -m bench.bench_lc_lsst_templates [--data ../shared/data] [--models models]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from alert_broker.classifiers.crossval import lsst_template_rows, metrics_by_source
from alert_broker.classifiers.evaluate import evaluate
from alert_broker.classifiers.registry import load
from alert_broker.classifiers.registry import versions as registry_versions
from alert_broker.classifiers.taxonomy import CLASSES
from alert_broker.classifiers.training import build_training_set

NAME = "lc_hierarchical_lsst"
FIGURES = ("branch_balanced_accuracy", "class_balanced_accuracy", "class_macro_f1")


def _brief(summary: dict) -> dict:
    return {k: round(float(summary[k]), 3) for k in FIGURES if k in summary}


def run(data: str, models: str | None, seed: int = 1, heldout_objects: int = 20000) -> dict:
    rows = lsst_template_rows(data, seed)
    print(f"template rows (seed {seed}): {rows.sources.value_counts().to_dict()}")
    held = build_training_set(heldout_objects, 20, 1001, survey="lsst") if heldout_objects else None
    out = {}
    for v in registry_versions(NAME, root=models):
        model = load(NAME, v, root=models)
        meta = model.metadata
        trained_on = meta.get("training_set", {}).get("rows_by_source", {})
        entry: dict = {}
        if held is not None:
            entry["held_out_simulation"] = _brief(evaluate(model, *held).summary())
        if any(str(s).startswith("template:") for s in trained_on):
            entry["templates"] = "out of fold (metadata)"
            entry.update({k: _brief(s) for k, s in meta.get("metrics", {}).get("out_of_fold", {}).items()})
        else:
            proba = model.predict_proba(rows.features).reindex(columns=list(CLASSES))
            entry["templates"] = "scored (never trained on a template)"
            for k, ev in metrics_by_source(proba, rows).items():
                entry[k] = _brief(ev.summary())
                sel = (rows.sources == k).to_numpy()
                labels = rows.labels[sel]
                if labels.nunique() == 1:  # one-class sets: the recall of that class
                    pred = proba[sel].idxmax(axis=1).to_numpy()
                    entry[k]["recall"] = round(float(np.mean(pred == labels.iloc[0])), 3)
        out[v] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--models", default=None, help="model registry (default: the shipped models)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--heldout-objects", type=int, default=20000, help="simulated LSST objects held out (0: none)"
    )
    args = p.parse_args(argv)
    print(json.dumps(run(args.data, args.models, args.seed, args.heldout_objects), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
