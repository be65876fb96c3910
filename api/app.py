"""The HTTP query API and the web explorer (FastAPI): ``create_app(BrokerData(...))``.

Read-only: every endpoint is a GET over :class:`alert_broker.api.data.BrokerData`, except ``POST /crossmatch``, which
reads an uploaded CSV of positions and writes nothing either. Every endpoint that answers with a table takes
``format=csv`` or ``format=votable`` for the same rows as a file (``formats``). Parameter names follow ALeRCE's
API and client where the concept is the same (``classifier``, ``class``, ``probability``, ``ranking``, ``ndet``,
``firstmjd``, ``lastmjd``, ``ra``, ``dec``, ``radius`` in arcsec, ``page``, ``page_size``, ``count``,
``order_by``, ``order_mode``). Bad input is a 4xx with a message: 422 for a value out of range, 404 for an
unknown object or alert, 409 for an ambiguous candid. The OpenAPI docs (``/docs``) and the explorer's pages
(``/``, ``/object/{oid}``, ``/sn``, ``/night``, ``/xmatch``) use only files served from here: the Swagger UI and Plotly
bundles come from their Python packages (``swagger-ui-bundle-v2``, ``plotly``), nothing from a CDN.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from alert_broker.api.data import MAX_PAGE_SIZE, BadRequest, BrokerData, Gone, NotFound, ObjectQuery, records
from alert_broker.api.db import DatabaseBusy, clean
from alert_broker.api.formats import TableFormat, render, stacked
from alert_broker.api.metrics import ApiMetrics, MetricsMiddleware
from alert_broker.api.stamps import stamp_png
from alert_broker.api.upload import MAX_UPLOAD_BYTES, decode_text, matched_table, parse_positions

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {
    "index": "index.html",
    "object": "object.html",
    "sn": "sn.html",
    "night": "night.html",
    "crossmatch": "crossmatch.html",
}
#: An object id: a survey's id (ZTF20aaelulu, LSST170028485706776685, ATLAS...) or a cross-survey id.
OID_PATTERN = r"^[A-Za-z0-9_.+\-]{1,64}$"
NAME_PATTERN = r"^[A-Za-z0-9_.+\-]{1,64}$"
FEATURE_PATTERN = r"^[A-Za-z0-9_.+/\-]{1,64}$"  # feature names hold / and - (Power_rate_1/2, g-r_max)
SURVEY_PATTERN = r"^[A-Za-z]{1,16}$"
MAX_CANDID = 2**63 - 1
MAX_LIST = 100


FORMAT_HELP = "json (default), csv or votable: a file to download (TOPCAT, pandas, astropy)"


def table_file(
    fmt: str, rows: list[dict], name: str, description: str = "", params: dict[str, Any] | None = None
) -> Response:
    """``rows`` as a CSV or VOTable download named ``name``."""
    body, media_type, filename = render(fmt, rows, name, description, params)
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


class SafeJSONResponse(JSONResponse):
    """JSON with NaN and infinities as null (plain JSON has neither)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(clean(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _package_dir(name: str) -> Path | None:
    """A package's folder without importing it (plotly's import is slow and we only want a file)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def vendor_files() -> dict[str, Path]:
    """The third-party browser files the explorer and the docs load, from their Python packages."""
    out: dict[str, Path] = {}
    plotly = _package_dir("plotly")
    if plotly is not None:
        out["plotly.min.js"] = plotly / "package_data" / "plotly.min.js"
    swagger = _package_dir("swagger_ui_bundle")
    if swagger is not None:
        dist = sorted((swagger / "vendor").glob("swagger-ui-*"))
        if dist:
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
                out[name] = dist[-1] / name
    return out


def _check_list(name: str, values: list[str] | None, pattern: str) -> list[str]:
    values = values or []
    if len(values) > MAX_LIST:
        raise BadRequest(f"{name}: at most {MAX_LIST} values")
    for v in values:
        if not re.fullmatch(pattern, v):
            raise BadRequest(f"{name}: {v[:40]!r} is not a valid value")
    return values


def _numbers(name: str, values: list[float] | None, lo: float, hi: float) -> list[float]:
    values = values or []
    if len(values) > 2:
        raise BadRequest(f"{name} takes one value (minimum) or two (minimum and maximum)")
    for v in values:
        if not (lo <= v <= hi):  # also refuses NaN
            raise BadRequest(f"{name}: {v} is outside [{lo:g}, {hi:g}]")
    return values


def _ints(name: str, values: list[int] | None, lo: int, hi: int) -> list[int]:
    values = values or []
    if len(values) > 2:
        raise BadRequest(f"{name} takes one value (minimum) or two (minimum and maximum)")
    for v in values:
        if not (lo <= v <= hi):
            raise BadRequest(f"{name}: {str(v)[:20]} is outside [{lo}, {hi}]")
    return [int(v) for v in values]


async def _read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it passes ``limit`` bytes: an upload is never held whole
    before its size is known."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the upload is {int(declared)} bytes: at most {limit} (split the list)", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the upload is over {limit} bytes (split the list)", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(data: BrokerData, title: str = "alert-broker query API") -> FastAPI:
    """The API and explorer over ``data``."""
    app = FastAPI(
        title=title,
        version="1.0",
        description=(
            "Read-only access to the broker's objects, light curves, classifications, stamps, supernova "
            "candidates and night statistics. Parameter names follow ALeRCE's API. The web explorer is at `/`."
        ),
        docs_url=None,
        redoc_url=None,
        default_response_class=SafeJSONResponse,
    )
    app.state.data = data
    app.state.metrics = metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    vendor = vendor_files()

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, err: BadRequest):
        return SafeJSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(NotFound)
    async def _missing(_: Request, err: NotFound):
        return SafeJSONResponse({"detail": str(err.args[0] if err.args else err)}, status_code=404)

    @app.exception_handler(Gone)
    async def _gone(_: Request, err: Gone):
        return SafeJSONResponse({"detail": str(err.args[0] if err.args else err)}, status_code=410)

    @app.exception_handler(DatabaseBusy)
    async def _busy(_: Request, err: DatabaseBusy):
        return SafeJSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def _slow(_: Request, err: psycopg.errors.QueryCanceled):
        return SafeJSONResponse({"detail": "the query took too long; narrow it down"}, status_code=503)

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def _empty(_: Request, err: psycopg.errors.UndefinedTable):
        detail = "the database holds no broker tables yet: process a night first (broker run-night)"
        return SafeJSONResponse({"detail": detail}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in err.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"][1:]) or "request"
        return SafeJSONResponse({"detail": f"{where}: {first['msg']}", "errors": errors}, status_code=422)

    # ------------------------------------------------------------------------------------------ pages
    def page(name: str) -> HTMLResponse:
        return HTMLResponse((STATIC / PAGES[name]).read_text(encoding="utf-8"))

    @app.get("/", include_in_schema=False)
    def index_page():
        return page("index")

    @app.get("/object/{oid}", include_in_schema=False)
    def object_page(oid: Annotated[str, PathParam(pattern=OID_PATTERN)]):
        return page("object")

    @app.get("/sn", include_in_schema=False)
    def sn_page():
        return page("sn")

    @app.get("/night", include_in_schema=False)
    def night_page():
        return page("night")

    @app.get("/xmatch", include_in_schema=False)
    def crossmatch_page():
        return page("crossmatch")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor_file(name: str):
        path = vendor.get(name)
        if path is None or not path.is_file():
            raise HTTPException(404, f"no vendored file {name!r} (is the package installed? see docs/api.md)")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} — docs",
            swagger_js_url="/vendor/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui.css",
            swagger_favicon_url="/vendor/favicon-32x32.png",
        )

    @app.get("/api", include_in_schema=False)
    def api_root():
        return RedirectResponse("/docs")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------------------------------ API
    @app.get("/objects", tags=["objects"], summary="Search objects (filters, cone search, paging)")
    def objects(
        classifier: Annotated[str | None, Query(pattern=NAME_PATTERN, description="classifier name")] = None,
        classifier_version: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        class_: Annotated[
            str | None,
            Query(alias="class", pattern=NAME_PATTERN, description="class name (ALeRCE's `class`)"),
        ] = None,
        class_name: Annotated[str | None, Query(pattern=NAME_PATTERN, description="same as `class`")] = None,
        probability: Annotated[float | None, Query(ge=0, le=1, description="minimum probability")] = None,
        ranking: Annotated[
            int | None, Query(ge=1, le=100, description="class rank (default 1 with a class)")
        ] = None,
        ndet: Annotated[list[int] | None, Query(description="[min] or [min, max] detections")] = None,
        firstmjd: Annotated[
            list[float] | None, Query(description="[min] or [min, max] first detection MJD")
        ] = None,
        lastmjd: Annotated[
            list[float] | None, Query(description="[min] or [min, max] last detection MJD")
        ] = None,
        survey: Annotated[list[str] | None, Query(description="ztf, lsst, atlas (repeatable)")] = None,
        oid: Annotated[list[str] | None, Query(description="object ids (repeatable)")] = None,
        ra: Annotated[float | None, Query(ge=0, le=360, description="cone centre, degrees")] = None,
        dec: Annotated[float | None, Query(ge=-90, le=90, description="cone centre, degrees")] = None,
        radius: Annotated[float | None, Query(gt=0, le=36000, description="cone radius, arcsec")] = None,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
        count: bool = False,
        order_by: Literal[
            "oid",
            "ndet",
            "firstmjd",
            "lastmjd",
            "deltajd",
            "meanra",
            "meandec",
            "probability",
            "dist_arcsec",
            "dist",
        ]
        | None = None,
        order_mode: Literal["ASC", "DESC", "asc", "desc"] = "DESC",
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002  # ALeRCE's name
    ):
        """Objects, newest first, filtered by class (any or one classifier; `ranking` 1 = most probable class;
        each object's latest version of a classifier unless `classifier_version` names one),
        minimum probability, number of detections, first/last detection MJD, survey or id, or within `radius`
        arcsec of (`ra`, `dec`) (HEALPix-indexed, exact angular distance `dist_arcsec`). `count=true` adds the
        total. Pages of at most 1000. `format=csv` or `votable`: the page's objects as a file."""
        if class_ and class_name and class_ != class_name:
            raise BadRequest("give the class once (class or class_name)")
        q = ObjectQuery(
            classifier=classifier,
            classifier_version=classifier_version,
            class_name=class_ or class_name,
            probability=probability,
            ranking=ranking,
            ndet=_ints("ndet", ndet, 0, 2**31 - 1),
            firstmjd=_numbers("firstmjd", firstmjd, -1e6, 1e6),
            lastmjd=_numbers("lastmjd", lastmjd, -1e6, 1e6),
            survey=_check_list("survey", survey, SURVEY_PATTERN),
            oid=_check_list("oid", oid, OID_PATTERN),
            ra=ra,
            dec=dec,
            radius=radius,
            page=page,
            page_size=page_size,
            count=count,
            order_by=order_by,
            order_mode=order_mode.upper(),
        )
        res = data.objects(q)
        if format != "json":
            params = {k: v for k, v in vars(q).items() if v not in (None, [], False)}
            return table_file(
                format, res["items"], "objects", f"objects, page {q.page} of {q.page_size}", params
            )
        return res

    @app.get("/objects/{oid}", tags=["objects"], summary="One object")
    def object_(oid: Annotated[str, PathParam(pattern=OID_PATTERN)]):
        """The object's summary (ALeRCE's object fields), its `magstats` per band, cross-matches (`xmatch`),
        the catalogue neighbours its alerts carry (`neighbours`: PS1, Gaia, solar-system), outlier scores, its
        alerts, and its `association` with objects of other surveys (cross-survey id `xid` and members)."""
        return data.object(oid)

    @app.get("/objects/{oid}/magstats", tags=["objects"], summary="Magnitude statistics per band")
    def magstats(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        data._object_row(oid)
        rows = data.magstats(oid)
        if format != "json":
            return table_file(
                format, rows, f"{oid}_magstats", f"magnitude statistics of {oid} per band", {"oid": oid}
            )
        return rows

    @app.get("/objects/{oid}/features", tags=["objects"], summary="Light-curve features")
    def features(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        version: Annotated[
            str | None, Query(pattern=NAME_PATTERN, description="a feature version, e.g. lc-features-1.1.0")
        ] = None,
        name: Annotated[
            str | None,
            Query(pattern=FEATURE_PATTERN, description="one feature: its name (every band) or its column"),
        ] = None,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """The object's stored feature vectors, one row per feature, band and version (ALeRCE's `name`,
        `value`, `fid`, `version`): `feature` is the column of the lake's wide table (`Amplitude_1`), `name`
        the feature (`Amplitude`), `fid` the ZTF filter id and `band` its letter (LSST: the band only; both
        empty for object-level features such as `Multiband_period`), `lastmjd` the light curve's last point
        when it was computed. A value that could not be computed (too few points in a band) is null."""
        rows = data.features(oid, version, name)
        if format != "json":
            params = {"oid": oid, "version": version, "name": name}
            return table_file(format, rows, f"{oid}_features", f"light-curve features of {oid}", params)
        return rows

    @app.get("/objects/{oid}/lightcurve", tags=["light curves"], summary="Light curve")
    def lightcurve(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        all_surveys: Annotated[
            bool, Query(description="the combined light curve of every survey's object")
        ] = False,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """`detections` (raw `magpsf`/`sigmapsf` and corrected `magpsf_corr`/`sigmapsf_corr`/`sigmapsf_corr_ext`,
        `corrected`, `dubious`, difference `flux`/`flux_err` in nJy), `non_detections` (`diffmaglim`) and
        `forced_photometry`: every point the history store holds, time-ordered. `format=csv` or `votable`: one
        table of them all, time-ordered, its `kind` column saying which (`detection`, `non_detection`,
        `forced_photometry`)."""
        lc = data.lightcurve(oid, all_surveys=all_surveys)
        if format != "json":
            parts = {"detection": lc["detections"], "non_detection": lc["non_detections"],
                     "forced_photometry": lc["forced_photometry"]}  # fmt: skip
            params = {"oid": oid, "all_surveys": all_surveys, "oids": lc["oids"], "source": lc["source"]}
            name = f"{oid}_lightcurve" + ("_all_surveys" if all_surveys else "")
            return table_file(format, stacked(parts, "kind", "mjd"), name, f"light curve of {oid}", params)
        return lc

    def lightcurve_part(oid: str, part: str, label: str, fmt: str):
        """One part of the light curve, as JSON rows or a file."""
        lc = data.lightcurve(oid)
        if fmt != "json":
            params = {"oid": oid, "source": lc["source"]}
            return table_file(fmt, lc[part], f"{oid}_{part}", f"{label} of {oid}", params)
        return lc[part]

    @app.get("/objects/{oid}/detections", tags=["light curves"], summary="Detections only")
    def detections(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        return lightcurve_part(oid, "detections", "detections", format)

    @app.get("/objects/{oid}/non_detections", tags=["light curves"], summary="Non-detection limits only")
    def non_detections(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        return lightcurve_part(oid, "non_detections", "non-detection limits", format)

    @app.get("/objects/{oid}/forced_photometry", tags=["light curves"], summary="Forced photometry only")
    def forced_photometry(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        return lightcurve_part(oid, "forced_photometry", "forced photometry", format)

    @app.get("/objects/{oid}/probabilities", tags=["classifications"], summary="Class probabilities")
    def probabilities(
        oid: Annotated[str, PathParam(pattern=OID_PATTERN)],
        classifier: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        classifier_version: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """Every classifier's and version's probability rows (ALeRCE's: `classifier_name`,
        `classifier_version`, `class_name`, `probability`, `ranking`), with the taxonomy's `level` and
        `parent`."""
        rows = data.probabilities(oid, classifier, classifier_version)
        if format != "json":
            params = {"oid": oid, "classifier": classifier, "classifier_version": classifier_version}
            return table_file(format, rows, f"{oid}_probabilities", f"class probabilities of {oid}", params)
        return rows

    @app.get("/classifiers", tags=["classifications"], summary="Classifiers and their classes")
    def classifiers():
        return data.classifiers()

    @app.get("/alerts/{candid}", tags=["alerts"], summary="One alert's summary")
    def alert(
        candid: Annotated[int, PathParam(ge=0, le=MAX_CANDID)],
        survey: Annotated[str | None, Query(pattern=SURVEY_PATTERN)] = None,
    ):
        row = data.alert(candid, survey)
        return {k: (str(v) if k == "candid" else v) for k, v in row.items()}

    @app.get("/alerts/{candid}/raw", tags=["alerts"], summary="The raw alert packet (Avro)")
    def raw(
        candid: Annotated[int, PathParam(ge=0, le=MAX_CANDID)],
        survey: Annotated[str | None, Query(pattern=SURVEY_PATTERN)] = None,
    ):
        """The packet byte for byte as it arrived (an Avro container), stamps included."""
        _, payload = data.raw_packet(candid, survey)
        return Response(
            payload,
            media_type="application/avro",
            headers={"Content-Disposition": f'attachment; filename="{int(candid)}.avro"'},
        )

    @app.get("/alerts/{candid}/stamps/{kind}", tags=["alerts"], summary="A cutout (PNG or FITS)")
    def stamp(
        candid: Annotated[int, PathParam(ge=0, le=MAX_CANDID)],
        kind: Literal["science", "template", "difference"],
        format: Literal["png", "fits"] = "png",  # noqa: A002  # ALeRCE's parameter name
        survey: Annotated[str | None, Query(pattern=SURVEY_PATTERN)] = None,
        scale: Annotated[int, Query(ge=1, le=8, description="PNG: pixels per cutout pixel")] = 1,
    ):
        """The alert's `science`, `template` or `difference` cutout: a PNG for browsers (zscale, asinh), or the
        FITS file as the alert carried it (`format=fits`; gzipped for ZTF)."""
        _, raw_stamp = data.stamp(candid, kind, survey)
        cache = {"Cache-Control": "public, max-age=86400"}
        if format == "fits":
            gz = raw_stamp[:2] == b"\x1f\x8b"
            name = f"{int(candid)}_{kind}.fits" + (".gz" if gz else "")
            return Response(
                raw_stamp,
                media_type="application/gzip" if gz else "application/fits",
                headers={**cache, "Content-Disposition": f'attachment; filename="{name}"'},
            )
        try:
            png = stamp_png(raw_stamp, scale=scale)
        except (ValueError, OSError) as err:
            raise NotFound(f"the {kind} cutout of alert {candid} cannot be read as an image: {err}") from None
        return Response(png, media_type="image/png", headers=cache)

    @app.get("/sn-candidates", tags=["nights"], summary="The night's supernova candidates")
    def sn_candidates(
        night: Annotated[
            int | None, Query(ge=19000101, le=29991231, description="YYYYMMDD; default latest")
        ] = None,
        max_age_days: Annotated[
            float, Query(gt=0, le=365, description="first detection at most this old")
        ] = 5.0,
        min_probability: Annotated[float, Query(ge=0, le=1, description="stamp SN probability")] = 0.0,
        ranking: Annotated[int, Query(ge=1, le=5, description="SN at most this rank (1: the top class)")] = 1,
        exclude_stellar: bool = True,
        max_sgscore: Annotated[float, Query(ge=0, le=1)] = 0.4,
        ps1_radius: Annotated[float, Query(ge=0, le=30, description="arcsec")] = 1.4,
        sso_radius: Annotated[float, Query(ge=0, le=60, description="arcsec")] = 5.0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """ALeRCE SN Hunter-like list: objects with an alert in the night, young (`max_age_days`), classified SN
        by the stamp classifier, not star-like (the `stellar` flag, or a PS1 source within `ps1_radius` with
        `sgscore1` > `max_sgscore`) and not a known solar-system object; ranked by SN probability."""
        res = data.sn_candidates(
            night, max_age_days, min_probability, ranking, exclude_stellar, max_sgscore, ps1_radius, sso_radius,
            limit,
        )  # fmt: skip
        if format != "json":
            params = {"night": res["night"], "max_age_days": max_age_days, "min_probability": min_probability,
                      "ranking": ranking, "exclude_stellar": exclude_stellar, "max_sgscore": max_sgscore,
                      "ps1_radius": ps1_radius, "sso_radius": sso_radius, "limit": limit}  # fmt: skip
            name = f"sn-candidates_{res['night']}"
            return table_file(
                format, res["candidates"], name, f"supernova candidates of {res['night']}", params
            )
        return res

    @app.get("/stats", tags=["nights"], summary="The night's counts")
    def stats(night: Annotated[int | None, Query(ge=19000101, le=29991231)] = None):
        """Alerts per survey and per UTC hour, objects seen and new, top classes, dead letters, latest runs."""
        return data.stats(night)

    @app.get("/nights", tags=["nights"], summary="Nights with alerts")
    def nights(limit: Annotated[int, Query(ge=1, le=3660)] = 366):
        return data.nights(limit)

    @app.post(
        "/crossmatch",
        tags=["objects"],
        summary="Cross-match an uploaded CSV of positions with the broker's objects",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {"type": "string"},
                        "example": "id,ra,dec\nSN 2020oi,185.7289,15.8236\n",
                    }
                },
            }
        },
    )
    async def crossmatch(
        request: Request,
        radius: Annotated[float, Query(gt=0, le=60, description="arcsec")] = 2.0,
        all_matches: Annotated[
            bool, Query(description="every object within the radius, not only the nearest")
        ] = False,
        unmatched: Annotated[
            bool, Query(description="keep the positions without a match (empty match columns)")
        ] = False,
        ra_col: Annotated[str | None, Query(max_length=100, description="default: ra, RAJ2000, ...")] = None,
        dec_col: Annotated[
            str | None, Query(max_length=100, description="default: dec, DEJ2000, ...")
        ] = None,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """The body is a CSV file (header line, one position per row; comma, tab, semicolon or blank separated;
        decimal degrees or sexagesimal). Each position gets the nearest object within `radius` (or every one,
        `all_matches`): the upload's columns, its `line`, `dist_arcsec`, the object's id, survey, position,
        detections and first/last MJD, and each classifier's most probable class and probability. A row that is
        not a position refuses the upload, naming its line. At most 20,000 positions and 5 MiB."""
        body = await _read_body(request, MAX_UPLOAD_BYTES)

        def work():
            positions = parse_positions(decode_text(body), ra_col, dec_col)
            matches = data.match_positions(positions.ra, positions.dec, radius, all_matches)
            return positions, matched_table(positions, matches, unmatched)

        positions, table = await run_in_threadpool(work)
        if format != "json":
            params = {"radius": radius, "all_matches": all_matches, "unmatched": unmatched,
                      "ra_col": positions.ra_col, "dec_col": positions.dec_col, "positions": len(positions)}  # fmt: skip
            return table_file(
                format, records(table), "crossmatch", "uploaded positions and their objects", params
            )
        matched = int(table.loc[table["oid"].notna(), "line"].nunique())  # positions with a match
        return {
            "radius": radius,
            "positions": len(positions),
            "matched": matched,
            "ra_col": positions.ra_col,
            "dec_col": positions.dec_col,
            "rows": records(table),
        }

    @app.get("/watchlists", tags=["watch lists"], summary="Watch lists with hits")
    def watchlists():
        """Each watch list (`broker watchlist import`, run with `--watchlists`) that has hits: counts, last MJD."""
        return data.watchlists()

    @app.get("/watchlists/hits", tags=["watch lists"], summary="Watch-list hits, newest first")
    def watchlist_hits(
        watchlist: Annotated[list[str] | None, Query(description="watch list names (repeatable)")] = None,
        name: Annotated[list[str] | None, Query(description="entry names (repeatable)")] = None,
        night: Annotated[int | None, Query(ge=19000101, le=29991231)] = None,
        since_mjd: Annotated[float | None, Query(ge=0, le=200000)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """The alerts that landed on a watch-list entry: entry, object, alert, time, distance, magnitude."""
        rows = data.watchlist_hits(
            _check_list("watchlist", watchlist, NAME_PATTERN),
            _check_list("name", name, r"^[^\x00-\x1f]{1,200}$"),
            night,
            since_mjd,
            limit,
        )
        if format != "json":
            params = {
                "watchlist": watchlist,
                "name": name,
                "night": night,
                "since_mjd": since_mjd,
                "limit": limit,
            }
            return table_file(format, rows, "watchlist-hits", "watch-list hits, newest first", params)
        return rows

    @app.get("/catalogs", tags=["catalogues"], summary="The local cross-match catalogues")
    def catalogs():
        """The catalogues imported with `broker catalog import` under the catalogue folder: name, rows, columns."""
        return data.catalogs()

    @app.get("/catalogs/cone", tags=["catalogues"], summary="Catalogue sources around a position")
    def catalog_cone(
        ra: Annotated[float, Query(ge=0, le=360, description="degrees")],
        dec: Annotated[float, Query(ge=-90, le=90, description="degrees")],
        radius: Annotated[float, Query(gt=0, le=1800, description="arcsec")] = 30.0,
        catalog: Annotated[
            list[str] | None, Query(description="catalogue names (default: every one)")
        ] = None,
        nearest: Annotated[bool, Query(description="only the nearest source of each catalogue")] = False,
        limit: Annotated[int, Query(ge=1, le=1000, description="sources per catalogue")] = 100,
        format: Annotated[TableFormat, Query(description=FORMAT_HELP)] = "json",  # noqa: A002
    ):
        """As ALeRCE's catsHTM service: the sources of each local catalogue within `radius`, nearest first, with
        `dist_arcsec` and the catalogue's columns; `total` counts them all when `limit` cuts the list."""
        names = _check_list("catalog", catalog, NAME_PATTERN)
        res = data.catalog_cone(ra, dec, radius, names or None, nearest, limit)
        if format != "json":
            rows = stacked({n: c["rows"] for n, c in res["catalogs"].items()}, "catalog")
            params = {"ra": ra, "dec": dec, "radius": radius, "nearest": nearest, "limit": limit,
                      **{f"total_{n}": c["total"] for n, c in res["catalogs"].items()}}  # fmt: skip
            return table_file(
                format,
                rows,
                "catalog-cone",
                f'local catalogue sources within {radius:g}" of the position',
                params,
            )
        return res

    @app.get("/runs", tags=["runs"], summary="The broker's recorded runs")
    def runs(
        source: Annotated[
            list[str] | None, Query(description="e.g. integrity, reclassify, archive:<name>, a topic")
        ] = None,
        status: Annotated[
            list[str] | None, Query(description="ok, failed, clean, repaired, missing, ...")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ):
        """Nights, integrity checks and re-scorings, newest first, with their status and counts: a monitor
        asks `/runs?source=integrity&limit=1` for the last check's verdict."""
        return data.runs(
            _check_list(
                "source", source, r"^[^\x00-\x1f]{1,300}$"
            ),  # any printable name (bound, never spliced)
            _check_list("status", status, r"^\w{1,40}$"),
            limit,
        )

    @app.get("/runs/{run_id}", tags=["runs"], summary="One run: settings and summary")
    def run(run_id: Annotated[str, PathParam(pattern=r"^[\w.:-]{1,200}$")]):
        return data.run(run_id)

    @app.get("/metrics", include_in_schema=False)
    def metrics_page():
        """Prometheus metrics of this API process (api/metrics.py)."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/health", include_in_schema=False)
    def health():
        data.db.scalar("SELECT 1")
        return {"status": "ok"}

    return app
