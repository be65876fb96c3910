"""The region-step loop and the sink registry: typed steps, guarded failures, one row per output."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from alert_broker.features.tables import Tables
from alert_broker.pipeline.resources import LakeSpec, WorkerResources
from alert_broker.pipeline.sinks import SINKS, Sink, postgres_rows, sinks_of, write_lake
from alert_broker.pipeline.steps import (
    REGION_STEPS,
    PipelineState,
    RegionConfig,
    Step,
    StepContext,
    run_steps,
)
from alert_broker.storage import NATURAL_KEYS, TABLES, Lake


def _state(oids=("a", "b", "c")) -> PipelineState:
    alerts = pd.DataFrame(
        {
            "oid": list(oids),
            "candid": range(1, len(oids) + 1),
            "night": 20200101,
            "source": "s",
            "partition": 0,
            "offset": range(len(oids)),
        }
    )
    return PipelineState.start(Tables(alerts=alerts))


def _ctx(**config) -> StepContext:
    return StepContext(RegionConfig(lake=LakeSpec("unused"), **config), WorkerResources())


def _tag(name):
    def run(state, ctx):
        seen = list(state.objects["oid"]) if not state.objects.empty else []
        return replace(state, objects=pd.DataFrame({"oid": [*seen, name]}))

    return run


def test_steps_run_in_order_only_when_they_apply_and_are_timed():
    steps = (
        Step("one", _tag("1")),
        Step("skipped", _tag("x"), applies=lambda c: c.with_features is False),
        Step("two", _tag("2")),
    )
    ctx = _ctx()
    out = run_steps(_state(), ctx, steps)
    assert list(out.objects["oid"]) == ["1", "2"]
    assert set(ctx.seconds) == {"one", "two"}


def test_a_guarded_run_drops_the_failing_objects_and_goes_on():
    def fails_on_b(state, ctx):
        if "b" in set(state.tables.alerts["oid"]):
            raise ZeroDivisionError("b is poisoned")
        return replace(state, magstats=state.tables.alerts[["oid"]])

    steps = (Step("ok", _tag("1"), guarded=True), Step("bad", fails_on_b, guarded=True))
    out = run_steps(_state(), _ctx(), steps)
    assert list(out.failed["oid"]) == ["b"]
    assert out.failed["reason"].str.contains("ZeroDivisionError: b is poisoned").all()
    assert set(out.magstats["oid"]) == {"a", "c"}
    assert set(out.batch.alerts["oid"]) == {"a", "c"}


def test_an_unguarded_step_failure_is_not_swallowed():
    def boom(state, ctx):
        raise RuntimeError("storage is down")

    with pytest.raises(RuntimeError, match="storage is down"):
        run_steps(_state(), _ctx(), (Step("boom", boom),))


def test_the_default_steps_follow_the_configuration():
    names = [s.name for s in REGION_STEPS if s.applies(RegionConfig(lake=LakeSpec("x"), with_features=False))]
    assert names == ["correct", "magstats", "neighbours"]
    full = RegionConfig(lake=LakeSpec("x"), xmatch=(("allwise", 2.0, ()),), history=object())  # type: ignore[arg-type]
    assert [s.name for s in REGION_STEPS if s.applies(full)] == [
        "history", "correct", "magstats", "features", "flux_features", "xmatch", "neighbours", "colours",
    ]  # fmt: skip


def test_every_sink_names_real_tables():
    for sink in SINKS:
        assert sink.lake is None or sink.lake in NATURAL_KEYS, sink
        assert sink.postgres is None or sink.postgres in TABLES, sink
        assert sink.lake or sink.postgres, sink
    assert len({s.name for s in SINKS}) == len(SINKS)


def test_adding_a_sink_is_one_row(tmp_path):
    """A new row is written to the lake and handed over for PostgreSQL without touching the tasks."""
    state = _state()
    state = replace(state, objects=pd.DataFrame({"oid": ["a"], "night": [20200101]}))
    extra = Sink("objects", lake="objects", postgres="object")
    paths, counts = write_lake(state, (extra,), Lake(str(tmp_path)), "b1", "b1-r000", state.alerts)
    assert counts == {"objects": 1} and len(paths) == 1
    assert list(postgres_rows(state, (extra,))) == ["objects"]


def test_sinks_by_stage():
    assert {s.name for s in sinks_of("decode")} == {"stamp_probabilities"}
    assert "alerts" in {s.name for s in sinks_of("region")}
