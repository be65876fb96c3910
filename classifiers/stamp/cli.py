"""``broker train stamp``: reproduce the stamp CNN from a seed (simulate, train, evaluate, save to the registry).

Registered under the ``train`` sub-command by ``classifiers.training.register``; TensorFlow is imported only when
the command runs, so the broker's CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time

from alert_broker.classifiers.stamp.rules import rules_named
from alert_broker.classifiers.stamp.surveys import STAMP_SURVEYS, stamp_survey

#: Where ``train_stamp_model`` lives: a TensorFlow module, loaded when the command runs (see the docstring).
TRAINING_MODULE = "alert_broker.classifiers.stamp.training"


def add_train_stamp(train_subparsers) -> None:
    """Add ``stamp`` under an existing ``train`` sub-command (beside ``lc``)."""
    p = train_subparsers.add_parser(
        "stamp", help="train the stamp classifier (rotation-invariant CNN) on simulated first alerts"
    )
    p.add_argument("--seed", type=int, default=1, help="simulation and training seed")
    p.add_argument("--n-per-class", type=int, default=3000, help="first alerts per stamp class")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument(
        "--survey",
        choices=sorted(STAMP_SURVEYS),
        default="ztf",
        help="whose alerts to simulate and learn (crop, metadata, rules: classifiers/stamp/surveys.py)",
    )
    p.add_argument(
        "--name", default=None, help="registry name (default: the survey's, e.g. stamp_classifier)"
    )
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--models", default=None, help="registry root (env BROKER_MODELS, default ./models)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument(
        "--eval-per-class",
        type=int,
        default=600,
        help="held-out simulated alerts per class (0: no evaluation)",
    )
    p.add_argument("--eval-seed", type=int, default=None, help="held-out seed (default: seed + 1000)")
    p.add_argument(
        "--real-data", default=None, help="shared data root: also score the 51 labelled real stamps"
    )
    p.add_argument(
        "--second-stage",
        action="store_true",
        help="also train the second stage (CNN output + stamp statistics + raw metadata) on simulated and the "
        "real labelled alerts of --real-data, with out-of-fold real figures (1.2.0 on)",
    )
    p.add_argument(
        "--stack-per-class", type=int, default=800, help="simulated alerts per class, second stage"
    )
    p.add_argument(
        "--cv-folds", type=int, default=5, help="object-grouped folds for the second stage's figures"
    )
    p.add_argument(
        "--second-stage-on",
        default=None,
        metavar="BASE_VERSION",
        help="no CNN training: --version = the CNN of BASE_VERSION + a second stage trained on it (needs "
        "--real-data); --eval-per-class scores the whole model on a held-out simulation",
    )
    p.add_argument(
        "--rules",
        default=None,
        help="with --second-stage-on: the business rules the version names and is served with, comma-separated "
        "names (classifiers.stamp.rules.RULES_BY_NAME; default ALeRCE's three)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="with --second-stage-on and --eval-per-class: fit the second stage's temperature on its out-of-fold "
        "real probabilities and the held-out simulation",
    )
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    p.set_defaults(func=cmd_train_stamp)


def add_export_onnx(subparsers) -> None:
    """``broker export-onnx``: write a stamp model version's network for ONNX Runtime (docs/stamp.md)."""
    p = subparsers.add_parser(
        "export-onnx", help="write model.onnx beside a stamp model's model.keras (served without TensorFlow)"
    )
    p.add_argument("--name", default="stamp_classifier")
    p.add_argument("--version", default=None, help="default: the latest")
    p.add_argument("--models", default=None, help="registry root (default: the shipped models)")
    p.set_defaults(func=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    training = importlib.import_module(TRAINING_MODULE)
    path, diff = training.export_onnx(args.name, args.version, root=args.models)
    print(f"wrote {path} (largest probability difference to Keras on random inputs: {diff:.1e})")
    return 0


def cmd_train_stamp(args: argparse.Namespace) -> int:
    if args.survey != "ztf" and (args.second_stage_on or args.second_stage or args.real_data):
        raise SystemExit(
            f"--survey {args.survey}: the labelled real stamps are ZTF's (no --real-data, no second stage)"
        )
    args.name = args.name or stamp_survey(args.survey).model_name
    if args.threads:
        import tensorflow as tf  # lazy: seconds and ~0.5 GB to start; the CLI must start fast

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    training = importlib.import_module(TRAINING_MODULE)
    t0 = time.perf_counter()
    if args.second_stage_on:
        if not args.real_data:
            raise SystemExit("--second-stage-on trains on the real labelled alerts: pass --real-data")
        result = training.add_second_stage(
            args.second_stage_on,
            args.version,
            args.real_data,
            seed=args.seed,
            name=args.name,
            out_root=args.models,
            stack_n_per_class=args.stack_per_class,
            cv_folds=args.cv_folds,
            eval_n_per_class=args.eval_per_class,
            eval_seed=args.eval_seed,
            overwrite=args.overwrite,
            rules=rules_named(args.rules.split(",")) if args.rules else None,
            calibrate=args.calibrate,
        )
        times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        print(f"saved {result.path} ({times}; {time.perf_counter() - t0:.0f} s in all)")
        print(json.dumps(result.metadata.get("second_stage", {}).get("out_of_fold", {}), indent=2))
        return 0
    result = training.train_stamp_model(
        survey=args.survey,
        seed=args.seed,
        n_per_class=args.n_per_class,
        epochs=args.epochs,
        out_root=args.models,
        name=args.name,
        version=args.version,
        eval_n_per_class=args.eval_per_class,
        eval_seed=args.eval_seed,
        real_data=args.real_data,
        overwrite=args.overwrite,
        verbose=2,
        second_stage=args.second_stage,
        stack_n_per_class=args.stack_per_class,
        cv_folds=args.cv_folds,
    )
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"saved {result.path} ({times}; {time.perf_counter() - t0:.0f} s in all)")
    metrics = result.metadata.get("metrics", {})
    brief = {
        k: {kk: vv for kk, vv in v.items() if kk in ("n", "balanced_accuracy", "macro_f1")}
        for k, v in metrics.items()
        if isinstance(v, dict)
    }
    if brief:
        print(json.dumps(brief, indent=1))
    return 0
