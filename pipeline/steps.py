"""The per-region steps and the loop that runs them (a region task is ``run_steps`` over ``REGION_STEPS``).

A step takes the region's state and returns it with its own fields filled in. The pure science steps come from
``alert_broker.features.science``; the steps here add what needs a worker's resources: the stored light-curve
history, catalogue cross-matches and the light-curve classifier. To add a step: write the function, add a field
to the state if it produces a new result, list it in ``REGION_STEPS`` (and give the result a row in the sink
registry, ``pipeline/sinks.py``, if it is to be stored).

Guarded steps (the science) never let one object stop a region: when a run of guarded steps fails, it is
re-run object by object to find the objects that make it fail; those become dead letters (``state.failed``)
and the run goes on without them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from alert_broker.features.lightcurve import FEATURE_VERSION, FLUX_FEATURE_VERSION
from alert_broker.features.science import (
    RegionState,
    colours_step,
    correct_step,
    features_step,
    flux_features_step,
    magstats_step,
    neighbours_step,
)
from alert_broker.features.xmatch import crossmatch
from alert_broker.pipeline.history import HistoryMerge, merge_history
from alert_broker.pipeline.output import MAIN_STREAM, StreamMessage, alert_key, annotate, encode
from alert_broker.pipeline.resources import HistorySpec, LakeSpec, ModelSpec, WorkerResources
from alert_broker.surveys import ADAPTERS

#: Cross-match of one catalogue: (name, radius in arcsec, columns to keep).
XmatchSpec = tuple[str, float, tuple[str, ...]]


@dataclass(frozen=True)
class FilterSpec:
    """User filters of the output stream: files or folders of filters, and ``name = expression`` rules."""

    paths: tuple[str, ...] = ()
    expressions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RegionConfig:
    """What a region task is asked to do: small, typed, the same for every region of a run."""

    lake: LakeSpec
    with_features: bool = True
    xmatch: tuple[XmatchSpec, ...] = ()
    catalog_root: str = ""
    lc_models: tuple[ModelSpec, ...] = ()
    #: The magnitude feature definition the features step computes: the one the ZTF light-curve classifier was
    #: trained on (its metadata names it; ``driver.RunModels``), so features and model always agree.
    feature_version: str = FEATURE_VERSION
    history: HistorySpec | None = None
    annotate: bool = False  # build the annotated output stream's messages
    filters: FilterSpec | None = None
    watchlists: tuple[str, ...] = ()
    watchlist_root: str = ""


@dataclass
class PipelineState(RegionState):
    """The science state plus what the pipeline's own steps carry: the history merge (what to store back), the
    stamp classes of first alerts (computed by the decode tasks) and the watch-list hits."""

    history: HistoryMerge | None = None
    stamp_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)
    watchlist_hits: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class StepContext:
    """A step's view of its task: the run's configuration, this worker's resources, time spent per step."""

    config: RegionConfig
    resources: WorkerResources
    seconds: dict[str, float] = field(default_factory=dict)


StepFunction = Callable[[PipelineState, StepContext], PipelineState]


@dataclass(frozen=True)
class Step:
    """One named step. ``applies`` says whether a run's configuration asks for it; ``guarded`` steps have
    their failures traced to the objects that cause them (see the module docstring)."""

    name: str
    run: StepFunction
    applies: Callable[[RegionConfig], bool] = lambda config: True
    guarded: bool = False


def pure(fn: Callable[[RegionState], RegionState]) -> StepFunction:
    """A pure science step as a pipeline step (it needs no context)."""

    def run(state: PipelineState, ctx: StepContext) -> PipelineState:  # noqa: ARG001 - the step interface
        return fn(state)  # type: ignore[return-value]

    run.__name__ = fn.__name__
    return run


# ------------------------------------------------------------------------------------- the I/O steps
def history_step(state: PipelineState, ctx: StepContext) -> PipelineState:
    """Merge the stored light curves of the region's objects with the batch (storage.history)."""
    assert ctx.config.history is not None
    store = ctx.resources.history(ctx.config.lake, ctx.config.history)
    merge = merge_history(state.batch, store)
    return replace(state, tables=merge.tables, history=merge, associations=merge.associations)


def lc_features_step(state: PipelineState, ctx: StepContext) -> PipelineState:
    """The light-curve features (``features.science.features_step``) under the run's feature version."""
    return features_step(state, ctx.config.feature_version)  # type: ignore[return-value]


def xmatch_step(state: PipelineState, ctx: StepContext) -> PipelineState:
    """The nearest source of each configured catalogue within its radius, for every object of the region."""
    objs = state.objects
    if objs.empty:
        return state
    frames = [
        crossmatch(objs, ctx.resources.catalog(ctx.config.catalog_root, name), radius, list(cols))
        for name, radius, cols in ctx.config.xmatch
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return state
    matches = pd.concat(frames, ignore_index=True).merge(objs[["oid", "night"]], on="oid", how="left")
    return replace(state, xmatch=matches)


def classify_step(state: PipelineState, ctx: StepContext) -> PipelineState:
    """Class probabilities (ALeRCE's long rows) and outlier scores of the objects with features, each feature
    set by the model trained on it (ZTF's magnitude features, LSST's flux features)."""
    probs, outliers = [], []
    for spec in ctx.config.lc_models:
        model = ctx.resources.lc_model(spec)
        version = model.metadata.get("feature_version", FEATURE_VERSION)
        feats = state.flux_features if version == FLUX_FEATURE_VERSION else state.features
        if feats.empty:
            continue
        if "FEATURE_VERSION" in feats.columns:
            feats = feats[feats["FEATURE_VERSION"].astype(str) == version]
        x = feats.drop(columns=[c for c in ("lastmjd", "night", "FEATURE_VERSION") if c in feats.columns])
        if x.empty:
            continue
        if hasattr(model, "classify"):  # the top level evaluated once for both
            p, o = model.classify(x)
        else:
            p, o = model.probabilities_long(x), model.outlier_scores(x)
        probs.append(p)
        outliers.append(o)
    if not probs:
        return state
    return replace(
        state,
        probabilities=pd.concat(probs, ignore_index=True) if len(probs) > 1 else probs[0],
        outliers=pd.concat(outliers, ignore_index=True) if len(outliers) > 1 else outliers[0],
    )


def watchlist_step(state: PipelineState, ctx: StepContext) -> PipelineState:
    """The batch's alerts within an entry's radius of every configured watch list."""
    alerts = state.alerts
    if alerts.empty:
        return state
    hits = []
    for name in ctx.config.watchlists:
        found = ctx.resources.watchlist(ctx.config.watchlist_root, name).hits(alerts)
        if not found.empty:
            hits.append(found)
    if not hits:
        return state
    return replace(state, watchlist_hits=pd.concat(hits, ignore_index=True) if len(hits) > 1 else hits[0])


def _has_allwise(config: RegionConfig) -> bool:
    return any(name == "allwise" for name, *_ in config.xmatch)


#: The region task's steps, in order.
REGION_STEPS: tuple[Step, ...] = (
    Step("history", history_step, applies=lambda c: c.history is not None),
    Step("correct", pure(correct_step), guarded=True),
    Step("magstats", pure(magstats_step), guarded=True),
    Step("features", lc_features_step, applies=lambda c: c.with_features, guarded=True),
    Step("flux_features", pure(flux_features_step), applies=lambda c: c.with_features, guarded=True),
    Step("xmatch", xmatch_step, applies=lambda c: bool(c.xmatch)),
    Step("neighbours", pure(neighbours_step)),
    Step("colours", pure(colours_step), applies=_has_allwise),
    Step("classify", classify_step, applies=lambda c: bool(c.lc_models) and c.with_features),
    Step("watchlists", watchlist_step, applies=lambda c: bool(c.watchlists)),
)


# ------------------------------------------------------------------------------------------ the loop
def run_steps(
    state: PipelineState, ctx: StepContext, steps: tuple[Step, ...] = REGION_STEPS
) -> PipelineState:
    """Run the steps that apply, in order, timing each (CPU seconds of this thread) into ``ctx.seconds``."""
    todo = [s for s in steps if s.applies(ctx.config)]
    i = 0
    while i < len(todo):
        j = i + 1
        if todo[i].guarded:
            while j < len(todo) and todo[j].guarded:
                j += 1
        block = todo[i:j]
        if block[0].guarded:
            state = _run_guarded(state, ctx, block)
        else:
            state = _run(state, ctx, block)
        i = j
    return state


def _run(state: PipelineState, ctx: StepContext, block: list[Step]) -> PipelineState:
    for step in block:
        t = time.thread_time()
        state = step.run(state, ctx)
        ctx.seconds[step.name] = ctx.seconds.get(step.name, 0.0) + time.thread_time() - t
    return state


def _run_guarded(state: PipelineState, ctx: StepContext, block: list[Step]) -> PipelineState:
    try:
        return _run(state, ctx, block)
    except Exception:  # noqa: BLE001 - isolate the objects that fail, go on with the others
        failed = _failing_objects(state, ctx, block)
        earlier = [state.failed] if not state.failed.empty else []
        state = replace(state.without(set(failed["oid"])), failed=pd.concat([*earlier, failed]))
        return _run(state, ctx, block)


def _failing_objects(state: PipelineState, ctx: StepContext, block: list[Step]) -> pd.DataFrame:
    """One row per alert of the objects that make ``block`` fail (candid, oid, provenance, reason). Slow, but
    only on the failure path, so one poisoned object never stops a batch (or, replayed, the whole stream)."""
    bad: dict[str, str] = {}
    alerts = state.tables.alerts
    for oid in alerts["oid"].unique():
        try:
            _run(state.restricted_to({oid}), StepContext(ctx.config, ctx.resources), block)
        except Exception as exc:  # noqa: BLE001 - any failure of the science on this object
            bad[oid] = f"{type(exc).__name__}: {exc}"[:500]
    failed = alerts[alerts["oid"].isin(bad)]
    cols = [c for c in ("candid", "oid", "source", "partition", "offset", "raw_path") if c in failed.columns]
    return failed[cols].assign(
        reason=failed["oid"].map(lambda o: f"processing failed for object {o}: {bad[o]}"),
        error="ScienceError",
    )


#: Band names by band id, every survey's (the annotated records name bands).
BANDS: dict[int, str] = {fid: band for adapter in ADAPTERS for fid, band in adapter.info.bands.items()}


def annotated_stream(
    state: PipelineState, ctx: StepContext
) -> tuple[list[StreamMessage], dict[str, int], dict[str, str]]:
    """The region's annotated alerts as output messages, with the streams each goes to (the main one, the user
    filters it passes, the watch lists it hits); plus counts and notes (a filter's first error) for the run
    report."""
    records = annotate(state, state.stamp_probabilities, BANDS)
    streams: list[list[str]] = [[MAIN_STREAM] for _ in records]
    counts = {"annotated": len(records)}
    notes: dict[str, str] = {}
    if ctx.config.filters is not None and records:
        filter_set, lock = ctx.resources.filter_set(ctx.config.filters)
        with lock:  # one set per worker process, its counters shared by the task threads
            matches = filter_set.evaluate(records)
            stats = filter_set.take_stats()
        topic = {f.name: f.topic for f in filter_set.filters}
        for name, indices in matches.items():
            for i in indices:
                stream = f"filter:{topic[name]}"
                if stream not in streams[i]:
                    streams[i].append(stream)
        for name, s in stats.items():
            counts[f"filter:{name}:matches"] = s.matched
            counts[f"filter:{name}:errors"] = s.errors
            if s.first_error is not None and s.errors:
                err = s.first_error
                notes[f"filter {name}"] = (
                    f"failed on candid {err.candid}: {err.message} (later failures only counted)"
                )
    for i, record in enumerate(records):
        for hit in record["watchlists"]:
            stream = f"watchlist:{hit['watchlist']}"
            if stream not in streams[i]:
                streams[i].append(stream)
    messages = [
        StreamMessage(alert_key(r["survey"], r["candid"]), encode(r), tuple(s))
        for r, s in zip(records, streams, strict=True)
    ]
    return messages, counts, notes
