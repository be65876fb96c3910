"""``broker dead-letters`` on a real night with broken files among real alerts: the counts per error with their
reasons, the latest ones, and a dead letter's bytes saved exactly as the file arrived."""

from __future__ import annotations

import json
import shutil

import fastavro
import pytest

from alert_broker.pipeline.cli import main
from alert_broker.pipeline.driver import run
from alert_broker.storage import Lake
from tests.fixtures.night import broken_files, copy_alerts, night_settings

pytestmark = pytest.mark.e2e


def test_dead_letters_are_counted_listed_and_saved(tmp_path, shared_data, summary_store, capsys):
    night = copy_alerts(shared_data / "ztf" / "fink_sample_1166", tmp_path / "night", 30)
    bad = broken_files(shared_data, 2)
    assert len(bad) == 2
    for f in bad:
        shutil.copy(f, night / ("zz_bad_" + f.name))  # sorted last
    settings = night_settings(tmp_path, str(night), summary_store.dsn)
    report = run(settings)
    assert report.alerts == 30 and report.dead_letters == 2
    flags = ["--out", str(settings.out), "--pg-dsn", summary_store.dsn]
    stored = summary_store.fetch_df('SELECT source, partition, "offset", error, reason FROM dead_letter')
    assert len(stored) == 2

    capsys.readouterr()
    assert main(["dead-letters", *flags]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 dead letters") and all(e in out for e in stored["error"])

    assert main(["dead-letters", *flags, "--list", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert sum(r["dead_letters"] for r in body["by_error"]) == 2
    assert {r["reason"] for r in body["latest"]} == set(stored["reason"])
    for row in body["by_error"]:
        assert row["example_reason"] in set(stored["reason"]) and row["source"] == f"archive:{night.name}"
    assert main(["dead-letters", *flags, "--error", "NoSuchError"]) == 0
    assert capsys.readouterr().out.startswith("no dead letter")

    # each dead letter's bytes back, exactly the file that arrived
    by_offset = {int(r.offset): r for r in stored.itertuples(index=False)}
    coords = [f"{r.source}:{r.partition}:{r.offset}" for r in by_offset.values()]
    dest = tmp_path / "saved"
    assert (
        main(["dead-letters", *flags, *[a for c in coords for a in ("--save", c)], "--dest", str(dest)]) == 0
    )
    saved = sorted(dest.iterdir())
    assert len(saved) == 2
    originals = {f.read_bytes() for f in bad}
    assert {p.read_bytes() for p in saved} == originals
    # refusals: a malformed coordinate (2), one that names no dead letter (1)
    assert main(["dead-letters", *flags, "--save", "not-coordinates"]) == 2
    source = stored["source"][0]
    assert main(["dead-letters", *flags, "--save", f"{source}:0:999999", "--dest", str(dest)]) == 1
    assert "no dead letter at" in capsys.readouterr().err


def test_a_rerun_that_decodes_a_dead_letter_removes_it(tmp_path, shared_data, summary_store, capsys):
    """A night re-run after its broken packet was replaced by a good one (the producer repaired it, or a fixed
    decoder reads it now): the message is an alert, and its old dead letter is gone from PostgreSQL and the
    lake alike; a dead letter that still fails is written again."""
    night = copy_alerts(shared_data / "ztf" / "fink_sample_1166", tmp_path / "night", 20)
    bad = broken_files(shared_data, 2)
    names = [f"zz_bad_{k}.avro" for k in range(2)]
    for f, name in zip(bad, names, strict=True):
        shutil.copy(f, night / name)
    settings = night_settings(tmp_path, str(night), summary_store.dsn)
    assert run(settings).dead_letters == 2
    # the first broken packet repaired: a good alert (not among the night's) in its place, same offset
    spare = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[100]
    shutil.copy(spare, night / names[0])
    report = run(settings)
    assert report.alerts == 21 and report.dead_letters == 1
    rows = summary_store.fetch_df('SELECT source, partition, "offset", reason FROM dead_letter')
    assert len(rows) == 1
    lake_rows = Lake(settings.lake).read_table("dead_letters", columns=["source", "partition", "offset"])
    assert lake_rows[["partition", "offset"]].values.tolist() == rows[["partition", "offset"]].values.tolist()
    with open(spare, "rb") as fh:
        candid = next(fastavro.reader(fh))["candid"]
    assert summary_store.fetch_df("SELECT count(*) AS n FROM alert WHERE candid = %s", (candid,))["n"][0] == 1
    capsys.readouterr()
    flags = ["--out", str(settings.out), "--pg-dsn", summary_store.dsn]
    assert main(["dead-letters", *flags]) == 0
    assert capsys.readouterr().out.startswith("1 dead letters")
