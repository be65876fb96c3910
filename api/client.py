"""The Python client of the broker's query API (``broker serve``): pandas frames, or astropy Tables on request.

Only HTTP (httpx) and pandas: it imports nothing of the server, so a notebook needs neither PostgreSQL nor the
lake. Method names and parameters follow ALeRCE's client where the concept is the same::

    from alert_broker.api.client import BrokerClient
    client = BrokerClient("http://127.0.0.1:8000")
    sn = client.query_objects(classifier="stamp_classifier", class_name="SN", probability=0.7, page_size=50)
    near = client.cone(25.1896, 27.5654, radius=5)              # arcsec
    lc = client.lightcurve("ZTF23abgqcnj")                      # {"detections": df, "non_detections": df, ...}
    probs = client.probabilities("ZTF23abgqcnj")
    period = client.features("ZTF23abgqcnj", name="Multiband_period")    # or wide=True: one row per version
    cutouts = client.stamps(2481319123615015015)                # {"science": 2-D array, ...}
    tonight = client.sn_candidates(20231017, format="astropy")

The module-level functions (``query_objects``, ``query_object``, ``lightcurve``, ``probabilities``, ``features``,
``stamps``, ``cone``, ``sn_candidates``, ``crossmatch``, ``catalog_cone``) use a client of ``$BROKER_API_URL`` (default ``http://127.0.0.1:8000``).
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8000"
#: 64-bit ids the API sends as strings (JavaScript numbers cannot hold them): back to int64 here.
ID_COLUMNS = ("candid", "parent_candid", "pid", "diaObjectId", "ssObjectId", "objectidps1", "first_candid",
              "last_candid")  # fmt: skip
STAMP_KINDS = ("science", "template", "difference")


class BrokerAPIError(RuntimeError):
    """The API answered with an error: ``status`` (404 unknown object, 422 bad parameter, ...) and its message."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """API rows as a DataFrame, 64-bit ids as (nullable) int64."""
    df = pd.DataFrame(rows)
    for c in ID_COLUMNS:
        if c in df.columns:
            df[c] = pd.array([None if pd.isna(v) else int(v) for v in df[c]], dtype="Int64")
            if not df[c].isna().any():
                df[c] = df[c].astype("int64")
    return df


def _convert(df: pd.DataFrame, format: str):  # noqa: A002  # ALeRCE's parameter name
    if format == "pandas":
        return df
    if format == "astropy":
        from astropy.table import Table  # lazy: astropy is slow to import; only format="astropy" needs it

        return Table.from_pandas(df)
    raise ValueError("format must be 'pandas' or 'astropy' (or 'json' where the method offers it)")


class BrokerClient:
    """A client of the API at ``url`` (default ``$BROKER_API_URL`` or http://127.0.0.1:8000)."""

    def __init__(self, url: str | None = None, timeout: float = 60.0):
        self.url = (url or os.environ.get("BROKER_API_URL") or DEFAULT_URL).rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- HTTP
    def _get(self, path: str, params: dict | None = None, content: bytes | None = None) -> httpx.Response:
        """GET ``path`` (POST when there is ``content``); an error status raises :class:`BrokerAPIError`."""
        clean = {}
        for k, v in (params or {}).items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = str(v).lower()
            elif isinstance(v, list | tuple):
                v = [str(x).lower() if isinstance(x, bool) else x for x in v]
            clean[k] = v
        if content is None:
            res = self.http.get(path, params=clean)
        else:
            res = self.http.post(path, params=clean, content=content, headers={"Content-Type": "text/csv"})
        if res.status_code >= 400:
            try:
                detail = res.json().get("detail", res.text)
            except ValueError:
                detail = res.text
            raise BrokerAPIError(res.status_code, str(detail))
        return res

    def _json(self, path: str, params: dict | None = None) -> Any:
        return self._get(path, params).json()

    # ------------------------------------------------------------------------------------------- objects
    def query_objects(
        self,
        classifier: str | None = None,
        class_name: str | None = None,
        probability: float | None = None,
        ranking: int | None = None,
        ndet: int | list[int] | None = None,
        firstmjd: float | list[float] | None = None,
        lastmjd: float | list[float] | None = None,
        survey: str | list[str] | None = None,
        oid: str | list[str] | None = None,
        ra: float | None = None,
        dec: float | None = None,
        radius: float | None = None,
        classifier_version: str | None = None,
        page: int = 1,
        page_size: int = 20,
        count: bool = False,
        order_by: str | None = None,
        order_mode: str = "DESC",
        format: str = "pandas",  # noqa: A002  # ALeRCE's parameter name
    ):
        """Objects matching the filters (ALeRCE's ``query_objects``): a DataFrame (or astropy Table, or the
        API's JSON page with ``format="json"``). ``ndet``, ``firstmjd``, ``lastmjd``: a minimum or [min, max];
        ``radius`` in arcsec around (``ra``, ``dec``)."""
        params = {
            "classifier": classifier, "classifier_version": classifier_version, "class": class_name,
            "probability": probability, "ranking": ranking, "ndet": _listed(ndet), "firstmjd": _listed(firstmjd),
            "lastmjd": _listed(lastmjd), "survey": _listed(survey), "oid": _listed(oid), "ra": ra, "dec": dec,
            "radius": radius, "page": page, "page_size": page_size, "count": count, "order_by": order_by,
            "order_mode": order_mode,
        }  # fmt: skip
        body = self._json("/objects", params)
        if format == "json":
            return body
        return _convert(to_frame(body["items"]), format)

    def cone(self, ra: float, dec: float, radius: float, format: str = "pandas", **filters):  # noqa: A002
        """Objects within ``radius`` arcsec of (``ra``, ``dec``) degrees, nearest first (``dist_arcsec``)."""
        filters.setdefault("page_size", 1000)
        return self.query_objects(ra=ra, dec=dec, radius=radius, format=format, **filters)

    def query_object(self, oid: str, format: str = "pandas"):  # noqa: A002
        """The object's summary as a one-row DataFrame (or Table); ``format="json"`` gives the whole record:
        magstats, cross-matches, neighbours, alerts and the cross-survey association too."""
        body = self._json(f"/objects/{oid}")
        if format == "json":
            return body
        flat = {k: v for k, v in body.items() if not isinstance(v, list | dict)}
        return _convert(to_frame([flat]), format)

    def query_magstats(self, oid: str, format: str = "pandas"):  # noqa: A002
        return _convert(to_frame(self._json(f"/objects/{oid}/magstats")), format)

    def lightcurve(self, oid: str, all_surveys: bool = False, format: str = "pandas") -> dict:  # noqa: A002
        """``{"detections", "non_detections", "forced_photometry"}`` frames (or Tables) of the object's light
        curve: every point the broker stores, corrected and raw photometry on the detections."""
        body = self._json(f"/objects/{oid}/lightcurve", {"all_surveys": all_surveys})
        return {
            k: _convert(to_frame(body[k]), format)
            for k in ("detections", "non_detections", "forced_photometry")
        }

    def query_detections(self, oid: str, format: str = "pandas"):  # noqa: A002
        return self.lightcurve(oid, format=format)["detections"]

    def query_non_detections(self, oid: str, format: str = "pandas"):  # noqa: A002
        return self.lightcurve(oid, format=format)["non_detections"]

    def query_forced_photometry(self, oid: str, format: str = "pandas"):  # noqa: A002
        return self.lightcurve(oid, format=format)["forced_photometry"]

    def probabilities(self, oid: str, classifier: str | None = None, format: str = "pandas"):  # noqa: A002
        """Every probability row of every classifier and version (ALeRCE's ``query_probabilities``)."""
        rows = self._json(f"/objects/{oid}/probabilities", {"classifier": classifier})
        return _convert(to_frame(rows), format)

    query_probabilities = probabilities

    def features(
        self,
        oid: str,
        version: str | None = None,
        name: str | None = None,
        wide: bool = False,
        format: str = "pandas",  # noqa: A002
    ):
        """The object's light-curve features (ALeRCE's ``query_features``): one row per feature, band and
        version (``feature`` the wide column, ``name``, ``fid``, ``band``, ``value``, ``version``). ``wide=True``:
        one row per version, one column per feature column (``Amplitude_1``, ``Multiband_period``, ...), as the
        lake's ``features`` table has them."""
        rows = self._json(f"/objects/{oid}/features", {"version": version, "name": name})
        df = to_frame(rows)
        if wide:
            if df.empty:
                df = pd.DataFrame(columns=["version"])
            else:
                order = list(dict.fromkeys(df["feature"]))
                df = df.pivot(index="version", columns="feature", values="value")[order].reset_index()
                df.columns.name = None
        return _convert(df, format)

    query_features = features

    # ------------------------------------------------------------------------------------------- alerts
    def stamps(self, alert_id: int, survey: str | None = None, format: str = "array") -> dict:  # noqa: A002
        """The alert's three cutouts, ``{"science", "template", "difference"}`` -> a 2-D numpy array
        (``format="array"``), an astropy HDUList (``"hdulist"``), the FITS bytes as the alert carried them
        (``"fits"``, gzipped for ZTF) or a PNG (``"png"``). Cutouts the alert lacks are left out."""
        out: dict = {}
        for kind in STAMP_KINDS:
            try:
                res = self._get(
                    f"/alerts/{int(alert_id)}/stamps/{kind}",
                    {"format": "png" if format == "png" else "fits", "survey": survey},
                )
            except BrokerAPIError as err:
                if err.status == 404 and "carries no" in err.detail:
                    continue
                raise
            data = res.content
            if format in ("fits", "png"):
                out[kind] = data
                continue
            from astropy.io import fits  # lazy: astropy is slow to import; only FITS decoding needs it

            if data[:2] == b"\x1f\x8b":  # ZTF's cutouts come gzipped
                data = gzip.decompress(data)
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", fits.verify.VerifyWarning
                )  # ZTF pads the SIMPLE card unusually
                hdus = fits.open(io.BytesIO(data))
                hdus.verify("silentfix")
            if format == "hdulist":
                out[kind] = hdus
            elif format == "array":
                out[kind] = next(h.data for h in hdus if h.data is not None)
            else:
                raise ValueError("format must be 'array', 'hdulist', 'fits' or 'png'")
        return out

    get_stamps = stamps

    def raw_packet(self, alert_id: int, survey: str | None = None) -> bytes:
        """The alert packet exactly as it arrived (Avro)."""
        return self._get(f"/alerts/{int(alert_id)}/raw", {"survey": survey}).content

    # ------------------------------------------------------------------------------------------- nights
    def sn_candidates(self, night: int | None = None, format: str = "pandas", **criteria):  # noqa: A002
        """The night's supernova candidates, ranked (``max_age_days``, ``min_probability``, ... as the API)."""
        body = self._json("/sn-candidates", {"night": night, **criteria})
        return _convert(to_frame(body["candidates"]), format)

    def stats(self, night: int | None = None) -> dict:
        return self._json("/stats", {"night": night})

    def nights(self, format: str = "pandas"):  # noqa: A002
        return _convert(to_frame(self._json("/nights")), format)

    def crossmatch(
        self,
        positions: pd.DataFrame | str | os.PathLike,
        radius: float = 2.0,
        all_matches: bool = False,
        unmatched: bool = False,
        ra_col: str | None = None,
        dec_col: str | None = None,
        format: str = "pandas",  # noqa: A002
        chunk: int = 20_000,
    ):
        """The broker's objects near each of ``positions`` (``POST /crossmatch``): a DataFrame (with ``ra``/``dec``
        columns or those named), a CSV file's path, or CSV text. Rows: the positions' columns, their ``line``,
        ``dist_arcsec``, the object and its classes; the nearest object only unless ``all_matches``. A DataFrame
        longer than ``chunk`` (the server's limit per upload) is sent in parts; ``line`` stays the line each row
        has in one CSV of the whole frame."""
        params = {"radius": radius, "all_matches": all_matches, "unmatched": unmatched, "ra_col": ra_col,
                  "dec_col": dec_col}  # fmt: skip
        if isinstance(positions, pd.DataFrame):
            rows = []
            for start in range(0, max(len(positions), 1), chunk):
                body = positions.iloc[start : start + chunk].to_csv(index=False).encode()
                for row in self._get("/crossmatch", params, content=body).json()["rows"]:
                    rows.append({**row, "line": row["line"] + start})
            return _convert(to_frame(rows), format)
        if isinstance(positions, os.PathLike) or (isinstance(positions, str) and "\n" not in positions):
            with open(positions, "rb") as f:
                body = f.read()
        else:
            body = str(positions).encode()
        rows = self._get("/crossmatch", params, content=body).json()["rows"]
        return _convert(to_frame(rows), format)

    def watchlists(self, format: str = "pandas"):  # noqa: A002
        """The watch lists with hits: hits, targets hit, objects, last MJD."""
        return _convert(to_frame(self._json("/watchlists")), format)

    def watchlist_hits(
        self,
        watchlist: str | list[str] | None = None,
        name: str | list[str] | None = None,
        night: int | None = None,
        since_mjd: float | None = None,
        limit: int = 200,
        format: str = "pandas",  # noqa: A002
    ):
        """The alerts that landed on watch-list entries, newest first."""
        params = {"watchlist": _listed(watchlist), "name": _listed(name), "night": night, "since_mjd": since_mjd,
                  "limit": limit}  # fmt: skip
        return _convert(to_frame(self._json("/watchlists/hits", params)), format)

    # ------------------------------------------------------------------------------------------- catalogues
    def catalogs(self, format: str = "pandas"):  # noqa: A002
        """The local cross-match catalogues the broker serves: name, rows, columns."""
        return _convert(to_frame(self._json("/catalogs")), format)

    def catalog_cone(
        self,
        ra: float,
        dec: float,
        radius: float = 30.0,
        catalog: str | list[str] | None = None,
        nearest: bool = False,
        limit: int = 100,
        format: str = "pandas",  # noqa: A002
    ) -> dict:
        """``{catalogue: frame}``: each local catalogue's sources within ``radius`` arcsec of (``ra``, ``dec``),
        nearest first (``catalog_id``, ``dist_arcsec``, ``ra``, ``dec`` and the catalogue's columns)."""
        params = {"ra": ra, "dec": dec, "radius": radius, "catalog": _listed(catalog), "nearest": nearest,
                  "limit": limit}  # fmt: skip
        found = self._json("/catalogs/cone", params)["catalogs"]
        return {name: _convert(to_frame(c["rows"]), format) for name, c in found.items()}

    def catshtm_conesearch(
        self, ra: float, dec: float, radius: float, catalog_name: str, format: str = "pandas"
    ):  # noqa: A002
        """ALeRCE's ``catshtm_conesearch``: one catalogue's sources within ``radius`` arcsec, nearest first."""
        return self.catalog_cone(ra, dec, radius, catalog_name, limit=1000, format=format)[catalog_name]

    def catshtm_crossmatch(
        self, ra: float, dec: float, radius: float, catalog_name: str = "all", format: str = "pandas"
    ):  # noqa: A002
        """ALeRCE's ``catshtm_crossmatch``: the nearest source of each catalogue (or of ``catalog_name``) within
        ``radius`` arcsec, ``{catalogue: frame}`` (a frame without rows where none is that near)."""
        names = None if catalog_name == "all" else catalog_name
        return self.catalog_cone(ra, dec, radius, names, nearest=True, format=format)

    def runs(
        self,
        source: str | list[str] | None = None,
        status: str | list[str] | None = None,
        limit: int = 50,
        format: str = "pandas",  # noqa: A002
    ):
        """The recorded runs, newest first (nights, ``integrity`` checks, ``reclassify`` re-scorings)."""
        rows = self._json("/runs", {"source": _listed(source), "status": _listed(status), "limit": limit})
        return _convert(to_frame(rows), format)

    def run(self, run_id: str) -> dict:
        """One run with its settings (secrets masked) and summary."""
        return self._json(f"/runs/{quote(run_id, safe='')}")


def _listed(value):
    if value is None:
        return None
    return list(value) if isinstance(value, list | tuple) else [value]


_default: BrokerClient | None = None


def default_client() -> BrokerClient:
    global _default
    if _default is None:
        _default = BrokerClient()
    return _default


def query_objects(**kwargs):
    return default_client().query_objects(**kwargs)


def query_object(oid: str, **kwargs):
    return default_client().query_object(oid, **kwargs)


def lightcurve(oid: str, **kwargs) -> dict:
    return default_client().lightcurve(oid, **kwargs)


def probabilities(oid: str, **kwargs):
    return default_client().probabilities(oid, **kwargs)


def features(oid: str, **kwargs):
    return default_client().features(oid, **kwargs)


def stamps(alert_id: int, **kwargs) -> dict:
    return default_client().stamps(alert_id, **kwargs)


def cone(ra: float, dec: float, radius: float, **kwargs):
    return default_client().cone(ra, dec, radius, **kwargs)


def sn_candidates(night: int | None = None, **kwargs):
    return default_client().sn_candidates(night, **kwargs)


def crossmatch(positions, **kwargs):
    return default_client().crossmatch(positions, **kwargs)


def catalog_cone(ra: float, dec: float, radius: float = 30.0, **kwargs) -> dict:
    return default_client().catalog_cone(ra, dec, radius, **kwargs)
