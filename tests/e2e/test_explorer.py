"""The web explorer in a real headless Chromium (Debian's ``chromium``, driven by Playwright): every page loads
with no console error, the light curve plots as many points as the store holds, the stamps render (not blank),
and search -> object navigation works. Screenshots of each page are kept in ``build/test-artifacts/explorer/``
(or ``$BROKER_TEST_ARTIFACTS/explorer``).

Skipped, saying why, only when no chromium binary exists (``make setup`` installs it with apt-get)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alert_broker.features.lightcurve import feature_names
from alert_broker.storage import Lake
from alert_broker.storage.history import HistoryStore
from tests.conftest import REPO
from tests.fixtures.browser import ARGS, CHROMIUM

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("BROKER_TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "explorer"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("no chromium binary (make setup installs Debian's chromium: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra (make setup)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, api_url):
    ctx = browser.new_context(viewport={"width": 1360, "height": 1000}, base_url=api_url)
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    # nothing may leave the machine: every request goes to the server under test
    pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith(api_url)
             else (problems.append(f"external request: {route.request.url}"), route.abort()))  # fmt: skip
    pg.problems = problems
    yield pg
    ctx.close()


def _open(page, path: str, shot: str):
    page.goto(path)
    page.wait_for_function("document.body.dataset.ready !== undefined", timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.body.dataset.ready") == "yes", page.problems
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    assert page.problems == []


def _stored_detections(api_night, oid: str) -> int:
    history = HistoryStore(Lake(api_night.lake))
    home = history.read("objects", history.pixels("objects"), [oid])["pixel"].tolist()
    return len(history.read("detections", home, [oid]))


STAMPS_RENDERED = """() => [...document.querySelectorAll('#stamps img')].map((img) => {
  if (!img.complete || img.naturalWidth === 0) return -1;
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { s += d[i]; s2 += d[i] * d[i]; n += 1; }
  return Math.sqrt(s2 / n - (s / n) ** 2);
})"""


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_object_page(page, api_store, api_night, survey):
    oid = api_store.fetch_df(
        "SELECT o.oid FROM object o WHERE o.survey = %s AND EXISTS (SELECT 1 FROM probability p WHERE p.oid = o.oid) "
        "ORDER BY o.ndet DESC, o.oid LIMIT 1",
        (survey,),
    )["oid"][0]
    # an earlier version of each classifier beside the night's (a night run with older models, or reclassify)
    older = api_store.fetch_df("SELECT * FROM probability WHERE oid = %s", (oid,)).assign(
        classifier_version="0.0.1"
    )
    api_store.upsert("probability", older)
    try:
        _open(page, f"/object/{oid}", f"object-{survey}")
    finally:
        api_store.conn.execute(
            "DELETE FROM probability WHERE oid = %s AND classifier_version = '0.0.1'", (oid,)
        )
    # one plot per classifier (its latest version), the earlier one listed below it
    names = older["classifier_name"].nunique()
    assert page.locator("#probs .probs").count() == names
    assert page.locator("#probs details.earlier").count() == names
    assert "0.0.1" not in " ".join(page.locator("#probs h2").all_text_contents())
    assert page.locator("#probs details.earlier td", has_text="0.0.1").count() == names
    lc = page.locator("#lc")
    stored = _stored_detections(api_night, oid)
    assert int(lc.get_attribute("data-points")) == int(lc.get_attribute("data-detections")) == stored > 0
    plotted = page.evaluate(
        "document.getElementById('lc').data.filter(t => t.meta.kind === 'detection').reduce((n, t) => n + t.x.length, 0)"
    )
    assert plotted == stored
    # three stamps, each a non-blank image
    page.wait_for_function(
        "[...document.querySelectorAll('#stamps img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    spreads = page.evaluate(STAMPS_RENDERED)
    assert len(spreads) == 3 and all(s > 1 for s in spreads), spreads
    # a raw-packet link per alert
    alerts = api_store.fetch_df("SELECT count(*) AS n FROM alert WHERE oid = %s", (oid,))["n"][0]
    assert page.locator("#alerts a.raw").count() == alerts
    # probabilities drawn; the corrected / raw toggle redraws the light curve
    assert page.locator("#probs .probs").count() >= 1
    page.check("input[name=mode][value=corrected]")
    page.wait_for_function("document.getElementById('lc').dataset.mode === 'corrected'")
    corrected = int(lc.get_attribute("data-points"))
    assert 0 < corrected <= stored
    page.check("input[name=mode][value=raw]")
    page.wait_for_function("document.getElementById('lc').dataset.mode === 'raw'")
    limits = page.evaluate("document.getElementById('lc').data.filter(t => t.meta.kind === 'limit').length")
    n_limits = len(
        HistoryStore(Lake(api_night.lake)).read(
            "non_detections", HistoryStore(Lake(api_night.lake)).pixels("non_detections"), [oid]
        )
    )
    assert (limits > 0) == (n_limits > 0)
    assert page.problems == []


def test_object_page_features_and_the_folded_light_curve(page, api_store, api_night):
    """The features card lists the latest vector (a filter narrows it); an object with a period folds its light
    curve at it: phases in [0, 2), every detection twice, no limits."""
    rows = api_store.fetch_df(
        "SELECT f.oid, (f.features->>'Multiband_period')::float AS period FROM feature f "
        "JOIN object o USING (oid) WHERE o.survey = 'ztf' AND (f.features->>'Multiband_period')::float > 0 "
        "ORDER BY o.ndet DESC, f.oid LIMIT 1"
    )
    oid, period = rows["oid"][0], float(rows["period"][0])
    _open(page, f"/object/{oid}", "object-features")
    box = page.locator("#features")
    assert int(box.get_attribute("data-rows")) == 172
    page.fill(
        "#featfilter", "Amplitude"
    )  # names holding it, in any case: (Percent)Amplitude, SF_ML_amplitude
    shown = sum("amplitude" in n.lower() for n in feature_names())
    page.wait_for_function(f"document.getElementById('features').dataset.rows === '{shown}'")
    assert page.locator("#features tbody tr").count() == shown == 6
    stored = _stored_detections(api_night, oid)
    assert page.locator("#fold").is_enabled()
    page.check("#fold")
    page.wait_for_function("document.getElementById('lc').dataset.folded !== ''")
    assert float(page.locator("#lc").get_attribute("data-folded")) == pytest.approx(period, rel=1e-9)
    xs = page.evaluate(
        "document.getElementById('lc').data.filter(t => t.meta.kind === 'detection').flatMap(t => t.x)"
    )
    assert len(xs) == 2 * stored and min(xs) >= 0 and max(xs) < 2
    assert (
        page.evaluate("document.getElementById('lc').data.filter(t => t.meta.kind === 'limit').length") == 0
    )
    page.uncheck("#fold")
    page.wait_for_function("document.getElementById('lc').dataset.folded === ''")
    assert page.problems == []


def test_download_links_save_the_shown_tables(page, api_store, api_night, tmp_path):
    """The object page's light-curve and features links, and the search page's, save files (a real browser
    download) that hold what the page shows: every point of the light curve, the chosen feature version."""
    import io
    import warnings

    import pandas as pd
    from astropy.io.votable import parse

    oid = api_store.fetch_df(
        "SELECT o.oid FROM object o JOIN feature f USING (oid) WHERE o.survey = 'ztf' ORDER BY o.ndet DESC, o.oid "
        "LIMIT 1"
    )["oid"][0]
    _open(page, f"/object/{oid}", "object-downloads")

    def save(selector: str) -> bytes:
        with page.expect_download() as info:
            page.click(selector)
        target = tmp_path / info.value.suggested_filename
        info.value.save_as(target)
        return target.read_bytes()

    body = save("#dl-lc a[data-format=votable]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = parse(io.BytesIO(body), verify="exception").get_first_table().to_table()
    shown = page.evaluate(
        "document.getElementById('lcinfo').textContent.match(/\\d+/g).slice(0, 3).map(Number)"
    )  # detections, non-detections, forced photometry as the page says
    assert len(table) == sum(shown) and (table["kind"] == "detection").sum() == shown[0]
    assert shown[0] == _stored_detections(api_night, oid)
    features = pd.read_csv(io.BytesIO(save("#dl-features a[data-format=csv]")))
    assert len(features) == 172 and features["version"].nunique() == 1
    assert features["version"][0] == page.locator("#featversion").input_value()

    _open(page, "/?survey=lsst", "search-downloads")
    page.click("#go")
    page.wait_for_function("document.getElementById('dl-objects').textContent.includes('CSV')")
    objects = pd.read_csv(io.BytesIO(save("#dl-objects a[data-format=csv]")))
    lsst = api_store.fetch_df("SELECT count(*) AS n FROM object WHERE survey = 'lsst'")["n"][0]
    assert len(objects) == lsst and set(objects["survey"]) == {"lsst"}
    assert page.problems == []


def test_search_then_object(page, api_store):
    row = api_store.fetch_df(
        "SELECT oid, meanra, meandec FROM object WHERE survey = 'ztf' ORDER BY oid LIMIT 1"
    ).iloc[0]
    _open(page, "/", "search")
    assert page.locator("#results a.oid").count() > 0  # recent objects on arrival
    page.fill("input[name=ra]", str(row["meanra"]))
    page.fill("input[name=dec]", str(row["meandec"]))
    page.fill("input[name=radius]", "5")
    page.click("#go")
    page.wait_for_function("document.querySelectorAll('#results a.oid').length === 1 && "
                           f"document.querySelector('#results a.oid').textContent === '{row['oid']}'")  # fmt: skip
    page.click("#results a.oid")
    page.wait_for_url(f"**/object/{row['oid']}")
    page.wait_for_function("document.body.dataset.ready === 'yes'", timeout=30_000)
    assert page.locator("#oid").text_content() == row["oid"]
    assert page.problems == []


def test_sn_candidates_page(page, api_store):
    night = int(
        api_store.fetch_df("SELECT night FROM alert GROUP BY night ORDER BY count(*) DESC LIMIT 1")["night"][
            0
        ]
    )
    _open(page, f"/sn?night={night}", "sn-candidates")
    rows = page.locator("#candidates tbody tr")
    assert rows.count() >= 1
    page.wait_for_function(
        "[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("img.thumb").count() == 3 * rows.count()
    page.click("th[data-key=sn_probability]")  # rank by another column and back
    page.click("#candidates .quick >> nth=0")
    page.wait_for_function(
        "document.querySelector('#qlc') && document.querySelector('#qlc').dataset.points > 0"
    )
    page.screenshot(path=str(ARTIFACTS / "sn-quicklook.png"), full_page=True)
    assert page.problems == []


def test_night_dashboard(page, api_store):
    night = int(
        api_store.fetch_df("SELECT night FROM alert GROUP BY night ORDER BY count(*) DESC LIMIT 1")["night"][
            0
        ]
    )
    _open(page, f"/night?night={night}", "night")
    alerts = api_store.fetch_df("SELECT count(*) AS n FROM alert WHERE night = %s", (night,))["n"][0]
    assert page.locator("#cards .stat .value").first.text_content() == str(alerts)
    hours = page.evaluate(
        "document.getElementById('hours').data.reduce((n, t) => n + t.y.reduce((a, b) => a + b, 0), 0)"
    )
    assert hours == alerts
    assert page.evaluate("document.getElementById('classes').data.length") >= 1
    hits = api_store.fetch_df("SELECT count(*) AS n FROM watchlist_hit WHERE night = %s", (night,))["n"][0]
    shown = page.locator("#watchhits tbody tr").count()
    assert shown == hits and (hits == 0) == (page.locator("#watchhits .muted").count() == 1)


def test_crossmatch_upload_page(page, api_store, tmp_path):
    objects = api_store.fetch_df(
        "SELECT oid, meanra, meandec FROM object WHERE meanra IS NOT NULL ORDER BY oid LIMIT 5"
    )
    rows = [f"{o.oid}-target,{o.meanra + 0.0001:.7f},{o.meandec:.7f}" for o in objects.itertuples()]
    upload = tmp_path / "targets.csv"
    upload.write_text("name,ra,dec\n" + "\n".join(rows) + "\nempty sky,10.0,-80.0\n")
    _open(page, "/xmatch", "crossmatch-empty")
    page.set_input_files("input[name=file]", str(upload))
    page.check("input[name=unmatched]")
    page.click("#xmform button[type=submit]")
    page.wait_for_selector("#csvlink", timeout=30_000)
    assert page.locator("#status").text_content().startswith("5 of 6 positions matched")
    links = page.locator("#matches a.oid")
    assert sorted(links.all_text_contents()) == sorted(objects["oid"])
    assert page.locator("#matches tbody tr").count() == 6  # the empty sky's row kept
    page.screenshot(path=str(ARTIFACTS / "crossmatch.png"), full_page=True)
    # a file that is not a list of positions: the reason, on the page
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ra,dec\nx,10,95\n")
    page.set_input_files("input[name=file]", str(bad))
    page.click("#xmform button[type=submit]")
    page.wait_for_selector("#matches .error", timeout=30_000)
    assert "line 2: dec 95" in page.locator("#matches .error").text_content()
    assert [
        p for p in page.problems if "422" not in p
    ] == []  # the refused upload's 422 is the browser's only note


def test_object_page_lists_the_local_catalogues_around_it(page, api_store):
    oid = api_store.fetch_df("SELECT oid FROM object ORDER BY oid LIMIT 1")["oid"][0]
    _open(page, f"/object/{oid}", "object-catalogues")
    box = page.locator("#catcone")
    assert box.get_attribute("data-catalogs") == "1"  # "near" within 30"; the ROSAT sample is elsewhere
    row = box.locator("tbody tr", has_text="near")
    assert f"{oid}-0" in row.text_content() and "mag=15" in row.text_content()
    assert row.locator("td").nth(1).text_content() == "2"  # its sources at 2" and 10"; 50" is outside
    page.locator("#catradius").fill("60")
    page.locator("#catradius").dispatch_event("change")
    page.wait_for_function("document.querySelector('#catcone tbody tr td:nth-child(2)')?.textContent === '3'")
    assert page.problems == []


def test_api_docs_page(page):
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    assert page.problems == []
