"""The integrity repair's plan (pipeline/integrity.py ``plan_repair``): which batches to re-run, in which order,
so the batch manifest's superseding (storage/manifest.py) never deletes an alert the repair does not rewrite."""

from __future__ import annotations

import pandas as pd

from alert_broker.pipeline import integrity
from alert_broker.pipeline.driver import make_batch_id
from alert_broker.pipeline.integrity import plan_repair
from alert_broker.surveys.messages import RawMessage

SRC = "archive:night"


def _id(spans: dict[tuple[str, int], tuple[int, int]]) -> str:
    return make_batch_id([RawMessage(s, p, o, b"") for (s, p), (a, z) in spans.items() for o in (a, z)])


def _manifest(*batches: dict[tuple[str, int], tuple[int, int]]) -> pd.DataFrame:
    rows = [(_id(spans), s, p, a, z) for spans in batches for (s, p), (a, z) in spans.items()]
    return pd.DataFrame(rows, columns=["batch_id", "source", "partition", "first_offset", "last_offset"])


def _scanned(source: str, partition: int, offsets) -> pd.DataFrame:
    offsets = list(offsets)
    return pd.DataFrame({"source": source, "partition": partition, "offset": offsets})


def _plan(targets, recorded, scanned, batch_size=10, refused=()):
    planned, refused_ = plan_repair(targets, recorded, scanned, batch_size, refused)
    return [(b.batch_id, b.why, b.targets, b.messages) for b in planned], refused_


def test_a_missing_alert_reruns_its_batch_alone():
    spans = [{(SRC, 0): (a, a + 9)} for a in (0, 10, 20, 30)]
    planned, refused = _plan([(SRC, 0, 15), (SRC, 0, 17)], _manifest(*spans), _scanned(SRC, 0, range(40)))
    assert refused == []
    # the batches before and after it do not overlap it: the manifest leaves them (and their alerts) alone
    assert planned == [(_id(spans[1]), "missing", 2, 10)]


def test_offsets_no_batch_covers_become_new_batches_inside_the_gaps():
    spans = [{(SRC, 0): (0, 9)}, {(SRC, 0): (20, 29)}]
    targets = [(SRC, 0, 12), (SRC, 0, 14), (SRC, 0, 33), (SRC, 0, 35), (SRC, 0, 37)]
    planned, refused = _plan(targets, _manifest(*spans), _scanned(SRC, 0, range(40)), batch_size=2)
    assert refused == []
    assert planned == [
        (_id({(SRC, 0): (12, 14)}), "new", 2, 2),  # only the missing messages, not 10-19's others
        (_id({(SRC, 0): (33, 35)}), "new", 2, 2),
        (_id({(SRC, 0): (37, 37)}), "new", 1, 1),
    ]  # inside the gaps: they overlap no recorded batch, so they retire none


def test_a_batch_the_source_no_longer_holds_whole_is_never_superseded():
    spans = [{(SRC, 0): (0, 9)}, {(SRC, 0): (10, 19)}, {(SRC, 0): (20, 29)}]
    scanned = _scanned(SRC, 0, range(5, 30))  # retention removed offsets 0-4
    planned, refused = _plan([(SRC, 0, 7), (SRC, 0, 25)], _manifest(*spans), scanned)
    assert planned == [(_id(spans[2]), "missing", 1, 10)]
    assert [(r["offset"], "no longer holds whole" in r["reason"]) for r in refused] == [(7, True)]


def test_multi_partition_batches_rerun_each_in_offset_order():
    t = "ztf"
    a = {(t, 0): (0, 9), (t, 1): (0, 4)}
    b = {(t, 0): (10, 19)}
    c = {(t, 1): (5, 14), (t, 0): (20, 25)}
    scanned = pd.concat([_scanned(t, 0, range(26)), _scanned(t, 1, range(15))])
    planned, refused = _plan([(t, 1, 12), (t, 0, 2)], _manifest(c, b, a), scanned)
    assert refused == []
    assert [(p[0], p[1], p[2]) for p in planned] == [(_id(a), "missing", 1), (_id(c), "missing", 1)]


def test_overlapping_recorded_batches_are_refused_not_guessed():
    """Recorded batches overlap only if something wrote past the manifest (each batch retires those it
    overlaps): re-running one would retire the other, so the repair says so instead."""
    a, b = {(SRC, 0): (0, 9)}, {(SRC, 0): (5, 14)}
    planned, refused = _plan([(SRC, 0, 2)], _manifest(a, b), _scanned(SRC, 0, range(15)))
    assert planned == []
    assert [(r["offset"], "overlap" in r["reason"]) for r in refused] == [(2, True)]


def test_a_changed_source_is_refused():
    spans = [{(SRC, 0): (0, 9)}]
    planned, refused = _plan([(SRC, 0, 3)], _manifest(*spans), _scanned(SRC, 0, range(10)), refused=[SRC])
    assert planned == [] and len(refused) == 1 and "no longer hold" in refused[0]["reason"]


def _report(missing: int = 0, duplicates: int = 0, changed: dict | None = None) -> integrity.IntegrityReport:
    cols = [
        "survey",
        "candid",
        "oid",
        "night",
        "source",
        "partition",
        "offset",
        "missing_lake",
        "missing_postgres",
    ]
    return integrity.IntegrityReport(
        sources=["s"], names=["archive:s"], lake="lake", night=None, scanned_at="now", seconds=0.1, messages=10,
        nights=[],
        missing=pd.DataFrame([["ztf", i, "o", 1, "archive:s", 0, i, True, False] for i in range(missing)],
                             columns=cols),
        not_dead_lettered=pd.DataFrame(),
        duplicates=pd.DataFrame({"survey": ["ztf"] * duplicates, "candid": range(duplicates)}),
        offsets=pd.DataFrame(),
        changed_sources=changed or {},
    )  # fmt: skip


def test_a_checks_recorded_status_and_counts():
    def outcome(report, after=None):
        result = None
        if after is not None:
            result = integrity.RepairResult([], [], "r1", "ok", 7, 3, 0, 1.0, after)
        return integrity.check_outcome(report, result)

    assert outcome(_report())[0] == "clean"
    status, counts, summary = outcome(_report(missing=3))
    assert (
        status == "missing"
        and counts["missing"] == counts["missing_after"] == 3
        and "missing" not in summary["scan"]
    )
    status, counts, summary = outcome(_report(missing=3), after=_report())
    assert status == "repaired" and (
        counts["missing"],
        counts["missing_after"],
        counts["repaired_messages"],
    ) == (3, 0, 7)
    assert summary["repair"]["run_id"] == "r1"
    assert outcome(_report(duplicates=2))[0] == "anomalies"  # nothing missing, something to read
    assert outcome(_report(changed={"archive:s": 4}))[1]["changed_sources"] == 4
    assert outcome(_report(missing=1), after=_report(missing=1, duplicates=1))[0] == "missing"
