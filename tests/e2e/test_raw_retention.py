"""End to end: the raw archive's retention (``broker lake expire``) on a real night. The old nights' packets go,
the manifest stays exact, everything else the broker serves stays, and the API and ``broker fetch`` say why a
stamp is gone (HTTP 410) instead of searching the whole archive for it.

Real alerts, a real Dask LocalCluster, a real PostgreSQL, a local lake (docs/lake-tables.md, "Retention").
"""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest

from alert_broker.api.app import create_app
from alert_broker.api.data import BrokerData, Gone
from alert_broker.pipeline import integrity
from alert_broker.pipeline.cli import main
from alert_broker.pipeline.driver import run
from alert_broker.storage import Lake, compaction, manifest, retention
from tests.fixtures.broker_api import serving
from tests.fixtures.night import copy_alerts, night_settings

pytestmark = pytest.mark.e2e

N = 100  # the first alerts of the sample: three nights (2018, 2019, 2023)


def _raw_nights(lake: Lake) -> list[int]:
    folder = lake._fs_path("raw")
    return sorted(int(os.path.basename(p).split("=")[1]) for p in lake.fs.ls(folder, detail=False))


def _listed(store, lake: Lake) -> set[str]:
    return {lake._fs_path(f) for files in manifest.batches(store)["files"] for f in files}


async def _get(app, paths: list[str]) -> list[httpx.Response]:
    """The app's answers over HTTP semantics, in process (ASGI)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://broker") as client:
        return [await client.get(p) for p in paths]


def test_raw_nights_expire_and_the_rest_is_served(tmp_path, shared_data, summary_store, capsys):
    night_dir = copy_alerts(shared_data / "ztf" / "fink_sample_1166", tmp_path / "alerts", N)
    settings = night_settings(tmp_path, str(night_dir), summary_store.dsn)
    assert run(settings).alerts == N
    lake = Lake(settings.lake)
    nights = _raw_nights(lake)
    assert len(nights) >= 2
    keep = nights[-1]
    flags = ["--out", str(settings.out), "--pg-dsn", summary_store.dsn]
    alerts = summary_store.fetch_df("SELECT candid, oid, night FROM alert ORDER BY candid")
    old = alerts[alerts["night"] < keep].iloc[0]
    new = alerts[alerts["night"] == keep].iloc[0]
    raw_before = lake.list_files("raw")

    # refusals, then a dry run that deletes nothing
    assert main(["lake", "expire", *flags]) == 2
    assert main(["lake", "expire", *flags, "--keep-days", "0"]) == 2
    assert main(["lake", "expire", *flags, "--keep-days", "3", "--before", str(keep)]) == 2
    capsys.readouterr()
    assert main(["lake", "expire", *flags, "--before", str(keep), "--dry-run"]) == 0
    assert f"would expire {len(nights) - 1} nights" in capsys.readouterr().out
    assert lake.list_files("raw") == raw_before and summary_store.count("lake_expired") == 0

    assert main(["lake", "expire", *flags, "--before", str(keep)]) == 0
    assert _raw_nights(lake) == [keep]
    gone = summary_store.fetch_df("SELECT night, files, bytes FROM lake_expired ORDER BY night")
    assert gone["night"].tolist() == nights[:-1] and (gone["files"] > 0).all() and (gone["bytes"] > 0).all()
    expired_files = set(raw_before) - set(lake.list_files("raw"))
    assert int(gone["files"].sum()) == len(expired_files)
    # the manifest lists exactly the files present: the other tables' files untouched
    listed = _listed(summary_store, lake)
    assert not listed & expired_files and set(lake.list_files("raw")) <= listed
    assert set(lake.list_files("alerts")) <= listed
    run_row = summary_store.fetch_df(
        "SELECT status, counts FROM pipeline_run WHERE source = %s", (retention.RUN_SOURCE,)
    ).iloc[0]
    assert run_row["status"] == "ok" and run_row["counts"]["nights"] == len(nights) - 1
    capsys.readouterr()
    assert main(["lake", "status", *flags, "--json"]) == 0
    status = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert status["raw"]["first_night"] == keep and status["alerts"]["first_night"] == nights[0]
    # again: nothing left to do
    assert main(["lake", "expire", *flags, "--before", str(keep)]) == 0
    assert summary_store.count("lake_expired") == len(nights) - 1

    # the API: the old alert's stamps and packet are gone (410, the reason), the new one's are there, and the
    # object, its light curve and the alert's summary are all still served
    data = BrokerData(summary_store.dsn, settings.lake)
    try:
        with pytest.raises(Gone, match=f"night {old['night']}.*retention"):
            data.stamp(int(old["candid"]), "science")
        with pytest.raises(Gone):
            data.raw_packet(int(old["candid"]))
        assert data.stamp(int(new["candid"]), "science")[1]
        paths = [f"/alerts/{old['candid']}/stamps/science", f"/alerts/{old['candid']}/raw",
                 f"/alerts/{new['candid']}/stamps/science", f"/alerts/{old['candid']}", f"/objects/{old['oid']}/lightcurve"]  # fmt: skip
        stamp, raw, kept, summary, lightcurve = asyncio.run(_get(create_app(data), paths))
        assert stamp.status_code == 410 and "retention" in stamp.json()["detail"]
        assert raw.status_code == 410 and kept.status_code == 200 and summary.status_code == 200
        lc = lightcurve.json()
        assert lc["detections"] and str(old["candid"]) in {d["candid"] for d in lc["detections"]}
    finally:
        data.close()
    capsys.readouterr()
    assert main(["fetch", *flags, str(old["candid"]), "--dest", str(tmp_path / "fetched")]) == 1
    assert "removed by the archive's retention" in capsys.readouterr().err

    # the integrity scan does not look at the archive: still clean; the lake compacts as before
    assert integrity.scan(settings).clean
    before = len(lake.read_table("alerts"))
    compaction.compact(summary_store, lake)
    assert len(lake.read_table("alerts")) == before

    # a re-run of the whole night writes the old nights' packets again (they are served again), and the next
    # expiry removes them again: the policy holds, each alert once in the lake
    assert run(settings).alerts == N
    assert _raw_nights(lake) == nights
    assert main(["lake", "expire", *flags, "--before", str(keep)]) == 0
    assert _raw_nights(lake) == [keep]
    assert _listed(summary_store, lake) >= set(lake.list_files("raw"))
    stored = lake.read_table("alerts")
    assert len(stored) == N and not stored.duplicated(["candid"]).any()
    # each expiry of a night adds what it removed
    assert int(summary_store.fetch_df("SELECT sum(files) AS n FROM lake_expired")["n"][0]) == 2 * len(
        expired_files
    )


def test_the_explorer_says_why_an_expired_alert_has_no_stamps(tmp_path, shared_data, summary_store):
    """In a real Chromium: an object whose every alert is in an expired night shows the API's reason where its
    stamps were; one of a kept night shows its stamps."""
    from tests.e2e.test_explorer import (
        ARGS,
        CHROMIUM,
    )  # lazy: the browser's settings, only this test needs them

    if not CHROMIUM:
        pytest.skip("no chromium binary (make setup installs Debian's chromium: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra (make setup)")
    night_dir = copy_alerts(shared_data / "ztf" / "fink_sample_1166", tmp_path / "alerts", N)
    settings = night_settings(tmp_path, str(night_dir), summary_store.dsn)
    assert run(settings).alerts == N
    keep = _raw_nights(Lake(settings.lake))[-1]
    assert (
        main(
            [
                "lake",
                "expire",
                "--out",
                str(settings.out),
                "--pg-dsn",
                summary_store.dsn,
                "--before",
                str(keep),
            ]
        )
        == 0
    )
    objects = summary_store.fetch_df("SELECT oid, max(night) AS last FROM alert GROUP BY oid ORDER BY oid")
    old = objects[objects["last"] < keep]["oid"].iloc[0]
    new = objects[objects["last"] == keep]["oid"].iloc[0]
    with (
        serving(summary_store.dsn, settings.lake, tmp_path / "serve.log") as url,
        sync_api.sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(base_url=url)
            page.goto(f"/object/{old}")
            page.wait_for_selector("#stamps .stamp-missing", timeout=30_000)
            text = page.locator("#stamps .stamp-missing").text_content()
            assert (
                "removed by the archive's retention" in text
                and f"night {int(objects.set_index('oid').loc[old, 'last'])}" in text
            )
            assert page.locator("#stamps img").count() == 0
            page.goto(f"/object/{new}")
            page.wait_for_function("document.body.dataset.ready === 'yes'", timeout=30_000)
            page.wait_for_function(
                "[...document.querySelectorAll('#stamps img')].length === 3 && "
                "[...document.querySelectorAll('#stamps img')].every((i) => i.complete && i.naturalWidth > 0)"
            )
            assert page.locator("#stamps .stamp-missing").count() == 0
        finally:
            browser.close()
