"""LSST alert packets (the latest `lsst.alert` schema of lsst-alert-packet) from a simulated chunk.

Mapping: every detection is a `diaSource` (psfFlux = difference flux in nJy, scienceFlux / templateFlux the
flux at the position in the visit / template image), the alert carries the triggering diaSource, up to 12 months
of earlier detections (`prvDiaSources`) and of forced photometry at every visit since 30 days before the first
detection (`prvDiaForcedSources`), the `diaObject` summary at the time of the alert (per-band weighted means,
scatter, extrema, counts), and three cutouts. Solar-system detections carry `ssSource` and no diaObject or
history, as Rubin associates them with an ssObject instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from astropy import units as u

from .avro import (
    Assembler,
    ContainerFramer,
    confluent_frame,
    encode_bytes,
    encode_long,
    lsst_schema,
    sync_marker,
)
from .batch import BatchEncoder
from .chunk import ChunkData
from .config import SimConfig
from .rng import stream
from .stamps import KIND_INDEX, LSST_ARTEFACT_KINDS, StampBank, patch_card
from .timeutil import night_label
from .ztf_alerts import Alert, _record

SOURCE_ID_STRIDE = 10**12  # diaSourceId = (visit index + 1) * stride + global object index
FORCED_ID_OFFSET = 4 * 10**18


def _galactic(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from astropy.coordinates import SkyCoord  # lazy: ~0.35 s to import; only LSST alerts need sky frames

    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    g = c.galactic
    e = c.barycentrictrueecliptic
    return np.stack([g.l.deg, g.b.deg]), np.stack([e.lon.deg, e.lat.deg])


def _cumulative_position(pop: pd.DataFrame, obj: np.ndarray, dcols: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per detection row (sorted by object, then time): the inverse-variance weighted mean position of the
    object's detections up to and including it, as a diaObject's (ra, dec) [deg]."""
    ra0 = pop["ra"].to_numpy()[obj]
    dec0 = pop["dec"].to_numpy()[obj]
    cosd = np.cos(np.deg2rad(dec0))
    dx = ((dcols["ra"] - ra0 + 180.0) % 360.0 - 180.0) * cosd
    dy = dcols["dec"] - dec0
    w = 1.0 / dcols["raErr"] ** 2
    start = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]]) if len(obj) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[start, len(obj)])

    def cum(v: np.ndarray) -> np.ndarray:
        c = np.cumsum(v)
        return c - np.repeat(c[start] - v[start], lengths)

    sw = cum(w)
    return (ra0 + cum(w * dx) / sw / cosd) % 360.0, dec0 + cum(w * dy) / sw


def _cumulative_object_stats(det: pd.DataFrame, nb: int) -> dict[str, np.ndarray]:
    """Per detection row: the diaObject's per-band statistics over all detections up to and including it."""
    g = det["obj"].to_numpy()
    b = det["band"].to_numpy()
    f = det["diff"].to_numpy()
    e = det["sigma"].to_numpy()
    sci = (det["f_src"] + det["f_host"]).to_numpy()
    out: dict[str, np.ndarray] = {}
    frame = {"g": g}
    for j in range(nb):
        m = b == j
        w = np.where(m, 1 / e**2, 0.0)
        frame[f"n{j}"] = m.astype(float)
        frame[f"w{j}"] = w
        frame[f"fw{j}"] = w * f
        frame[f"s{j}"] = np.where(m, f, 0.0)
        frame[f"q{j}"] = np.where(m, f * f, 0.0)
        frame[f"e{j}"] = np.where(m, e, 0.0)
        frame[f"sw{j}"] = w * sci
        frame[f"mn{j}"] = np.where(m, f, np.inf)
        frame[f"mx{j}"] = np.where(m, f, -np.inf)
    df = pd.DataFrame(frame)
    grp = df.groupby("g", sort=False)
    sums = grp[[c for c in df.columns if c[:2] not in ("mn", "mx") and c != "g"]].cumsum()
    mins = grp[[f"mn{j}" for j in range(nb)]].cummin()
    maxs = grp[[f"mx{j}" for j in range(nb)]].cummax()
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(nb):
            n = sums[f"n{j}"].to_numpy()
            w = sums[f"w{j}"].to_numpy()
            has = n > 0
            mean = np.where(has, sums[f"fw{j}"].to_numpy() / w, np.nan)
            var = sums[f"q{j}"].to_numpy() / n - (sums[f"s{j}"].to_numpy() / n) ** 2
            out[f"{j}_psfFluxMean"] = mean
            out[f"{j}_psfFluxMeanErr"] = np.where(has, 1 / np.sqrt(w), np.nan)
            out[f"{j}_psfFluxSigma"] = np.where(
                n > 1, np.sqrt(np.maximum(var * n / np.maximum(n - 1, 1), 0)), np.nan
            )
            out[f"{j}_psfFluxNdata"] = n.astype(np.int64)
            out[f"{j}_scienceFluxMean"] = np.where(has, sums[f"sw{j}"].to_numpy() / w, np.nan)
            out[f"{j}_scienceFluxMeanErr"] = out[f"{j}_psfFluxMeanErr"]
            out[f"{j}_psfFluxMin"] = np.where(has, mins[f"mn{j}"].to_numpy(), np.nan)
            out[f"{j}_psfFluxMax"] = np.where(has, maxs[f"mx{j}"].to_numpy(), np.nan)
            out[f"{j}_psfFluxErrMean"] = np.where(has, sums[f"e{j}"].to_numpy() / n, np.nan)
    out["nDiaSources"] = grp.cumcount().to_numpy().astype(np.int64) + 1
    return out


class LsstPacketBuilder:
    """Turns chunks into encoded LSST alerts (container files, or Confluent wire frames for Kafka)."""

    def __init__(self, cfg: SimConfig, bank: StampBank | None):
        self.cfg = cfg
        self.schema, self.version, self.schema_id = lsst_schema()
        self.A = Assembler(self.schema)
        self.framer = ContainerFramer(self.schema, cfg.codec, sync_marker(cfg.seed, "lsst"))
        self.bank = bank
        types = {f["name"]: f["type"] for f in self.schema["fields"]}
        self.enc_src = BatchEncoder(_record(types["diaSource"]))
        self.enc_forced = BatchEncoder(_record(_items_of(types["prvDiaForcedSources"])))
        self.enc_obj = BatchEncoder(_record(types["diaObject"]))
        self.enc_ss = BatchEncoder(_record(types["ssSource"]))
        self.arr_src = self.A.array_parts("prvDiaSources")
        self.arr_forced = self.A.array_parts("prvDiaForcedSources")
        self.null = {
            f: self.A.branch_prefix(f, null=True) for f in self.A.fields if isinstance(types[f], list)
        }
        self.pref = {f: self.A.branch_prefix(f) for f in self.A.fields}
        self.wire = cfg.extra.get("lsst_wire", "container")

    # ------------------------------------------------------------------------------------- columns ----
    def _source_columns(
        self, chunk: ChunkData, visits: pd.DataFrame, rows: pd.DataFrame, rng
    ) -> dict[str, np.ndarray]:
        spec = self.cfg.spec
        pop = chunk.pop
        n = len(rows)
        o = rows["obj"].to_numpy()
        ep = rows["epoch"].to_numpy()
        t = rows["mjd"].to_numpy()
        snr = rows["snr"].to_numpy()
        cls = pop["class"].to_numpy()[o]
        sub = pop["subtype"].to_numpy()[o]
        gobj = chunk.index * self.cfg.chunk_size + o
        visit = visits["night"].to_numpy()[ep].astype(np.int64) * 100000 + visits["visit_seq"].to_numpy()[ep]
        src_id = (ep.astype(np.int64) + 1) * SOURCE_ID_STRIDE + gobj
        sig_pos = (0.02 + 0.25 / np.maximum(np.abs(snr), 1.0)) / 3600.0
        dec0 = pop["dec"].to_numpy()[o]
        ra = (pop["ra"].to_numpy()[o] + rng.normal(0, 1, n) * sig_pos / np.cos(np.deg2rad(dec0))) % 360.0
        dec = dec0 + rng.normal(0, 1, n) * sig_pos
        diff = rows["diff"].to_numpy()
        sigma = rows["sigma"].to_numpy()
        sci = (rows["f_src"] + rows["f_host"]).to_numpy()
        tpl = (rows["f_ref"] + rows["f_host"]).to_numpy()
        is_ast = cls == "asteroid"
        is_bogus = cls == "bogus"
        galaxy = chunk.ctx["nr_kind"].to_numpy()[o] == 1
        fwhm = visits["fwhm"].to_numpy()[ep]
        ipsf = (fwhm / 2.3548) ** 2
        cols: dict[str, np.ndarray] = {
            "diaSourceId": src_id,
            "visit": visit,
            "detector": pop["rcid"].to_numpy()[o].astype(np.int64),
            "diaObjectId": np.where(is_ast, 0, pop["object_id"].to_numpy()[o]).astype(np.int64),
            "ssObjectId": np.where(is_ast, pop["object_id"].to_numpy()[o], 0).astype(np.int64),
            "parentDiaSourceId": np.zeros(n, np.int64),
            "midpointMjdTai": t,
            "exposureTime": np.full(n, 30.0),
            "ra": ra,
            "raErr": sig_pos,
            "dec": dec,
            "decErr": sig_pos,
            "ra_dec_Cov": sig_pos**2 * rng.normal(0, 0.1, n),
            "x": pop["xpos"].to_numpy()[o] + rng.normal(0, 0.2, n) + 1000,
            "xErr": sig_pos * 3600 / spec.pixel_scale,
            "y": pop["ypos"].to_numpy()[o] + rng.normal(0, 0.2, n) + 1000,
            "yErr": sig_pos * 3600 / spec.pixel_scale,
            "centroid_flag": np.zeros(n, bool),
            "apFlux": diff + rng.normal(0, 1, n) * sigma * 1.3,
            "apFluxErr": sigma * 1.7,
            "apFlux_flag": np.zeros(n, bool),
            "apFlux_flag_apertureTruncated": np.zeros(n, bool),
            "isNegative": snr < 0,
            "snr": np.abs(snr),
            "psfFlux": diff,
            "psfFluxErr": sigma,
            "psfChi2": 1681 * np.exp(rng.normal(0, 0.1, n)),
            "psfNdata": np.full(n, 1681, np.int64),
            "psfFlux_flag": np.zeros(n, bool),
            "psfFlux_flag_edge": np.zeros(n, bool),
            "psfFlux_flag_noGoodPixels": np.zeros(n, bool),
            "trailFlux": np.where(sub == "NEO", diff * 1.05, np.nan),
            "trailLength": np.where(sub == "NEO", rng.uniform(2, 20, n), np.nan),
            "trailNdata": np.where(sub == "NEO", 2000, 0).astype(np.int64),
            "trail_flag_edge": np.zeros(n, bool),
            "dipoleMeanFlux": np.where(sub == "dipole", np.abs(diff), np.nan),
            "dipoleNdata": np.where(sub == "dipole", 1681, 0).astype(np.int64),
            "scienceFlux": sci + rng.normal(0, 1, n) * sigma,
            "scienceFluxErr": sigma,
            "forced_PsfFlux_flag": np.zeros(n, bool),
            "forced_PsfFlux_flag_edge": np.zeros(n, bool),
            "forced_PsfFlux_flag_noGoodPixels": np.zeros(n, bool),
            "templateFlux": tpl + rng.normal(0, 1, n) * sigma / 3,
            "templateFluxErr": sigma / 3,
            "ixx": ipsf * np.where(galaxy, 2.0, 1.0) * np.exp(rng.normal(0, 0.1, n)),
            "iyy": ipsf * np.where(galaxy, 1.7, 1.0) * np.exp(rng.normal(0, 0.1, n)),
            "ixy": ipsf * rng.normal(0, 0.1, n),
            "ixxPSF": ipsf,
            "iyyPSF": ipsf,
            "ixyPSF": np.zeros(n),
            "shape_flag": np.zeros(n, bool),
            "extendedness": np.where(galaxy, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.3, n)),
            "reliability": np.where(is_bogus, rng.beta(1.5, 6, n), rng.beta(8, 1.5, n)),
            "reliabilityVersion": np.full(n, "sim-1"),
            "band": np.asarray(spec.bands)[rows["band"].to_numpy()],
            "isDipole": sub == "dipole",
            "dipoleFitAttempted": np.ones(n, bool),
            "timeProcessedMjdTai": t + (40 + rng.exponential(20, n)) / 86400.0,
            "bboxSize": np.maximum(
                15, (6 * np.sqrt(ipsf) / spec.pixel_scale + rng.integers(0, 10, n))
            ).astype(np.int64),
            "pixelFlags": is_bogus & (rng.random(n) < 0.5),
            "pixelFlags_cr": (sub == "cosmic_ray"),
            "pixelFlags_crCenter": (sub == "cosmic_ray"),
            "pixelFlags_streak": (sub == "streak"),
            "pixelFlags_streakCenter": (sub == "streak"),
            "pixelFlags_bad": (sub == "hot_pixel"),
            "glint_trail": np.zeros(n, bool),
        }
        for name in self.enc_src.names:
            if name.startswith("pixelFlags") and name not in cols:
                cols[name] = np.zeros(n, bool)
            if name.startswith("shape_flag") and name not in cols:
                cols[name] = np.zeros(n, bool)
        cols["_gobj"] = gobj
        return cols

    # ---------------------------------------------------------------------------------------- alerts ----
    def alerts(self, chunk: ChunkData, visits: pd.DataFrame) -> Iterator[Alert]:
        cfg, spec = self.cfg, self.cfg.spec
        rows = chunk.rows
        is_alert = (rows["detected"] & rows["in_window"]).to_numpy()
        if not is_alert.any():
            return
        alert_objs = np.unique(rows["obj"].to_numpy()[is_alert])
        sub = rows[np.isin(rows["obj"].to_numpy(), alert_objs)].reset_index(drop=True)
        rng = stream(cfg.seed, "lsst-packets", chunk.index)
        cols = self._source_columns(chunk, visits, sub, rng)
        det = sub["detected"].to_numpy()
        d_idx = np.flatnonzero(det)
        dsub = sub.iloc[d_idx].reset_index(drop=True)
        # diaSources: every detection once (an alert's own source and its prvDiaSources are slices of this).
        dcols = {k: v[d_idx] for k, v in cols.items()}
        src_buf, src_off = self.enc_src.encode(dcols, len(d_idx))
        # Forced photometry at every visit (all rows).
        fcols = {
            "diaForcedSourceId": cols["diaSourceId"] + FORCED_ID_OFFSET,
            "diaObjectId": chunk.pop["object_id"].to_numpy()[sub["obj"].to_numpy()].astype(np.int64),
            "ra": chunk.pop["ra"].to_numpy()[sub["obj"].to_numpy()],
            "dec": chunk.pop["dec"].to_numpy()[sub["obj"].to_numpy()],
            "visit": cols["visit"],
            "detector": cols["detector"],
            "psfFlux": cols["psfFlux"],
            "psfFluxErr": cols["psfFluxErr"],
            "midpointMjdTai": cols["midpointMjdTai"],
            "scienceFlux": cols["scienceFlux"],
            "scienceFluxErr": cols["scienceFluxErr"],
            "band": cols["band"],
            "timeProcessedMjdTai": cols["timeProcessedMjdTai"],
        }
        f_buf, f_off = self.enc_forced.encode(fcols, len(sub))
        # Alerts are a subset of the detections.
        a_in_det = np.flatnonzero(dsub["in_window"].to_numpy())
        n_a = len(a_in_det)
        stats = _cumulative_object_stats(dsub, spec.nbands)
        ocols = {
            "diaObjectId": dcols["diaObjectId"][a_in_det],
            "validityStartMjdTai": dcols["timeProcessedMjdTai"][a_in_det] + 1e-4,
        }
        if cfg.joint is None:
            ocols["ra"] = chunk.pop["ra"].to_numpy()[dsub["obj"].to_numpy()[a_in_det]]
            ocols["dec"] = chunk.pop["dec"].to_numpy()[dsub["obj"].to_numpy()[a_in_det]]
        else:  # joint runs: the diaObject sits where its diaSources so far put it (weighted mean)
            ra_m, dec_m = _cumulative_position(chunk.pop, dsub["obj"].to_numpy(), dcols)
            ocols["ra"], ocols["dec"] = ra_m[a_in_det], dec_m[a_in_det]
        ocols["raErr"] = dcols["raErr"][a_in_det] / np.sqrt(stats["nDiaSources"][a_in_det])
        ocols["decErr"] = ocols["raErr"]
        for j, bname in enumerate(spec.bands):
            for key in (
                "psfFluxMean",
                "psfFluxMeanErr",
                "psfFluxSigma",
                "psfFluxNdata",
                "scienceFluxMean",
                "scienceFluxMeanErr",
                "psfFluxMin",
                "psfFluxMax",
                "psfFluxErrMean",
            ):
                ocols[f"{bname}_{key}"] = stats[f"{j}_{key}"][a_in_det]
        ocols["nDiaSources"] = stats["nDiaSources"][a_in_det]
        obj_d = dsub["obj"].to_numpy()
        t_d = dsub["mjd"].to_numpy()
        first_d = np.flatnonzero(np.r_[True, obj_d[1:] != obj_d[:-1]])
        first_t = np.repeat(t_d[first_d], np.diff(np.r_[first_d, len(obj_d)]))
        ocols["firstDiaSourceMjdTai"] = first_t[a_in_det]
        ocols["lastDiaSourceMjdTai"] = t_d[a_in_det]
        o_buf, o_off = self.enc_obj.encode(ocols, n_a)
        is_ast = chunk.pop["class"].to_numpy()[obj_d[a_in_det]] == "asteroid"
        ss_pos = np.flatnonzero(is_ast)
        ss_bytes: dict[int, bytes] = {}
        if len(ss_pos):
            ss_bytes = self._ss_sources(
                chunk,
                dsub.iloc[a_in_det[ss_pos]],
                {k: v[a_in_det[ss_pos]] for k, v in dcols.items()},
                rng,
                ss_pos,
            )
        keys = None
        if self.bank is not None and cfg.stamps:
            keys = self._stamp_keys(
                chunk, dsub.iloc[a_in_det], {k: v[a_in_det] for k, v in dcols.items()}, rng
            )
        # History windows: prvDiaSources = earlier detections within history_days; forced = all visits since
        # 30 d before the first detection, within history_days.
        hist = spec.history_days
        kd = obj_d.astype(float) * 1e6 + (t_d - t_d.min() if len(t_d) else 0)
        lo_src = np.maximum(
            np.searchsorted(kd, kd - hist, side="left"),
            np.repeat(first_d, np.diff(np.r_[first_d, len(obj_d)])),
        )
        obj_all = sub["obj"].to_numpy()
        t_all = sub["mjd"].to_numpy()
        ka = obj_all.astype(float) * 1e6 + (t_all - t_d.min() if len(t_d) else t_all)
        row_of_det = d_idx
        a_rows = row_of_det[a_in_det]
        t_first_alert = first_t[a_in_det]
        lo_forced = np.searchsorted(
            ka, ka[a_rows] - np.minimum(hist, t_all[a_rows] - t_first_alert + 30.0), side="left"
        )
        night = night_label(t_d[a_in_det], spec.lon_deg).tolist()
        src_off_l, f_off_l, o_off_l = src_off.tolist(), f_off.tolist(), o_off.tolist()
        ids = dcols["diaSourceId"][a_in_det].tolist()
        oids = chunk.pop["oid"].to_numpy()[obj_d[a_in_det]].tolist()
        ra_l = dcols["ra"][a_in_det].tolist()
        dec_l = dcols["dec"][a_in_det].tolist()
        gobj = dcols["_gobj"][a_in_det].tolist()
        mjd = t_d[a_in_det].tolist()
        for k in range(n_a):
            i = int(a_in_det[k])
            r = int(a_rows[k])
            parts = {
                "diaSourceId": encode_long(ids[k]),
                "observation_reason": self.null["observation_reason"],
                "target_name": self.null["target_name"],
            }
            parts["diaSource"] = src_buf[src_off_l[i] : src_off_l[i + 1]]
            if k in ss_bytes:
                parts["prvDiaSources"] = self.null["prvDiaSources"]
                parts["prvDiaForcedSources"] = self.null["prvDiaForcedSources"]
                parts["diaObject"] = self.null["diaObject"]
                parts["ssSource"] = self.pref["ssSource"] + ss_bytes[k]
            else:
                j0 = int(lo_src[i])
                parts["prvDiaSources"] = self.arr_src(i - j0, src_buf[src_off_l[j0] : src_off_l[i]])
                f0 = int(lo_forced[k])
                parts["prvDiaForcedSources"] = self.arr_forced(r - f0, f_buf[f_off_l[f0] : f_off_l[r]])
                parts["diaObject"] = self.pref["diaObject"] + o_buf[o_off_l[k] : o_off_l[k + 1]]
                parts["ssSource"] = self.null["ssSource"]
            parts["mpc_orbits"] = self.null["mpc_orbits"]
            if keys is None:
                for c in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
                    parts[c] = self.null[c]
            else:
                sci, tpl, dif = self.bank.get(keys[k])
                for c, data in (("cutoutScience", sci), ("cutoutTemplate", tpl), ("cutoutDifference", dif)):
                    data = patch_card(patch_card(data, "CRVAL1", ra_l[k]), "CRVAL2", dec_l[k])
                    parts[c] = self.pref[c] + encode_bytes(data)
            payload = self.A.join(parts)
            if self.wire == "confluent":
                framed = confluent_frame(self.schema_id, payload)
            else:
                framed = self.framer.frame(payload)
            yield Alert(night[k], mjd[k], ids[k], oids[k], gobj[k], framed)

    def _ss_sources(
        self, chunk, rows: pd.DataFrame, dcols: dict, rng, positions: np.ndarray
    ) -> dict[int, bytes]:
        n = len(rows)
        o = rows["obj"].to_numpy()
        (gl, gb), (el, eb) = _galactic(dcols["ra"], dcols["dec"])
        pop = chunk.pop
        rate = pop["ss_rate"].to_numpy(dtype=float, na_value=0.25)[o] * 60 * 24 / 3600.0  # deg / day
        cols = {
            "diaSourceId": dcols["diaSourceId"],
            "ssObjectId": dcols["ssObjectId"],
            "designation": pop["ssnamenr"].to_numpy()[o].astype(str),
            "eclLambda": el,
            "eclBeta": eb,
            "galLon": gl,
            "galLat": gb,
            "elongation": rng.uniform(90, 180, n),
            "phaseAngle": rng.uniform(2, 30, n),
            "topoRange": rng.uniform(1.0, 3.0, n),
            "helioRange": rng.uniform(1.8, 3.5, n),
            "ephRa": dcols["ra"] + rng.normal(0, 0.3, n) / 3600.0,
            "ephDec": dcols["dec"] + rng.normal(0, 0.3, n) / 3600.0,
            "ephVmag": 31.4 - 2.5 * np.log10(np.abs(dcols["psfFlux"])) + rng.normal(0.3, 0.3, n),
            "ephRate": rate,
            "ephOffset": np.abs(rng.normal(0, 0.3, n)),
            "diaDistanceRank": np.ones(n, np.int64),
        }
        buf, off = self.enc_ss.encode(cols, n)
        off = off.tolist()
        return {int(p): buf[off[i] : off[i + 1]] for i, p in enumerate(positions)}

    def _stamp_keys(self, chunk, rows: pd.DataFrame, dcols: dict, rng) -> list[tuple]:
        pop, ctx = chunk.pop, chunk.ctx
        o = rows["obj"].to_numpy()
        cls = pop["class"].to_numpy()[o]
        subt = pop["subtype"].to_numpy()[o]
        nrk = ctx["nr_kind"].to_numpy()[o]
        kind = np.where(nrk == 0, KIND_INDEX["star"], KIND_INDEX["bare"])
        kind = np.where((nrk == 1) | (cls == "AGN"), KIND_INDEX["galaxy"], kind)
        kind = np.where(
            cls == "asteroid", np.where(subt == "NEO", KIND_INDEX["trail"], KIND_INDEX["bare"]), kind
        )
        for k in ("hot_pixel", "dipole", "cosmic_ray", "streak", "ghost"):
            kind = np.where((cls == "bogus") & (subt == k), KIND_INDEX[LSST_ARTEFACT_KINDS.get(k, k)], kind)
        f = dcols["psfFlux"]
        dmag = 31.4 - 2.5 * np.log10(np.maximum(np.abs(f), 1e-3))
        tflux = dcols["templateFlux"]
        rmag = np.where(tflux > 0, 31.4 - 2.5 * np.log10(np.maximum(tflux, 1e-3)), np.nan)
        off = np.hypot(ctx["nr_dx"].to_numpy()[o], ctx["nr_dy"].to_numpy()[o])
        return self.bank.keys(kind, dmag, np.sign(f), rmag, off, rows["maglim"].to_numpy(), rng)


def _items_of(t):
    if isinstance(t, list):
        t = next(b for b in t if isinstance(b, dict) and b.get("type") == "array")
    return t["items"]
