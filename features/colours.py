"""Catalogue colours as classifier features: ALeRCE's WISE colours W1-W2, W2-W3, g-W2, g-W3, r-W2, r-W3.

Inputs are the broker's own tables: ``xmatch`` rows of the AllWISE catalogue (``oid``, ``catalog``,
``properties`` JSON with ``W1mag``..``W3mag``, as features/xmatch.py writes them) and ``magstats`` rows
(``oid``, ``fid``, ``magmean``, ``magmean_corr``, ``corrected``).

Conventions, ALeRCE's (lc_classifier ``WiseStreamExtractor`` / ``compute_colors_from_bands``):

* **Magnitude systems are mixed on purpose.** AllWISE magnitudes are Vega; ZTF PSF magnitudes are calibrated
  to PS1 (AB-like). ALeRCE subtracts them as they are, and its trained classifiers expect exactly that, so we
  do too: ``g-W2 = g(AB) - W2(Vega)``. For a physically consistent AB colour pass ``vega_to_ab=True``, which
  adds the WISE Vega-to-AB offsets (Jarrett et al. 2011: W1 +2.699, W2 +3.339, W3 +5.174, W4 +6.620) first;
  features for ALeRCE-trained models must keep the default.
* **g and r are mean magnitudes of the object's detections** in the band (ALeRCE: the mean of the per-detection
  magnitudes). The magnitude is the one the light-curve features use (features/lightcurve/prepare.py,
  ALeRCE's ``magpsf_ml``): the corrected (apparent) ``magmean_corr`` when the object is corrected, the
  difference magnitude ``magmean`` otherwise. An object counts as corrected when ``objects.corrected`` says so
  (when an objects frame is given and knows it), else when every one of its g/r magstats rows is corrected.
  Bands: ZTF fid 1/2, LSST fid 5/6.
* A colour is NaN where a term is missing: no AllWISE match, a null WISE magnitude, no detection in the band.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from alert_broker.features.correction import as_float, require_columns
from alert_broker.features.objects import G_R_FIDS

COLOUR_COLUMNS = ("W1-W2", "W2-W3", "g-W2", "g-W3", "r-W2", "r-W3")
#: WISE AB - Vega offsets (mag), Jarrett et al. 2011 / the WISE All-Sky explanatory supplement.
WISE_VEGA_TO_AB = {"W1": 2.699, "W2": 3.339, "W3": 5.174, "W4": 6.620}
#: Names a WISE band takes in catalogue columns: CDS/VizieR AllWISE, IRSA/ALeRCE's database, a bare name.
WISE_COLUMN_NAMES = {b: (f"{b}mag", f"w{b[1]}mpro", b) for b in ("W1", "W2", "W3", "W4")}
REQUIRED_MAGSTATS = ("oid", "fid", "magmean", "magmean_corr")


def wise_bands(xmatch: pd.DataFrame, catalog: str = "allwise") -> pd.DataFrame:
    """W1..W4 (Vega, float64, NaN when null) per ``oid`` from the ``xmatch`` rows of ``catalog``.

    Reads the ``properties`` JSON (one C-level parse for all rows) or, for a frame already spread into columns,
    the band columns themselves. Several rows of one oid (the lake's per-batch rows): the last one wins.
    """
    require_columns(xmatch, ("oid",), "wise_bands() xmatch")
    rows = xmatch if "catalog" not in xmatch.columns else xmatch[xmatch["catalog"].astype("str") == catalog]
    rows = rows.drop_duplicates("oid", keep="last")
    oids = pd.Index(rows["oid"].astype("str").to_numpy(), name="oid")
    if "properties" in rows.columns and len(rows):
        props = rows["properties"]
        valid = props.dropna()
        if len(valid) and isinstance(valid.iloc[0], dict):  # read back from PostgreSQL's JSONB
            wide = pd.DataFrame([v if isinstance(v, dict) else {} for v in props], index=oids)
        else:
            text = props.astype("string").fillna("{}").to_numpy(dtype=object)
            wide = pd.read_json(io.StringIO("\n".join(text)), lines=True, dtype=False)
            wide.index = oids
    else:
        wide = rows.set_axis(oids, axis=0)
    out = pd.DataFrame(index=oids)
    for band, names in WISE_COLUMN_NAMES.items():
        name = next((n for n in names if n in wide.columns), None)
        out[band] = as_float(pd.to_numeric(wide[name], errors="coerce")) if name is not None else np.nan
    return out


def _corrected(magstats: pd.DataFrame, objects: pd.DataFrame | None, oids: pd.Index) -> np.ndarray:
    """Per oid: does it use corrected magnitudes (module docstring)?"""
    if "corrected" in magstats.columns:
        flags = magstats["corrected"].astype("boolean").fillna(False).astype(bool)
        corrected = flags.groupby(magstats["oid"].astype("str").to_numpy()).all()
        out = corrected.reindex(oids, fill_value=False).to_numpy(dtype=bool)
    else:
        out = np.zeros(len(oids), dtype=bool)
    if objects is not None and {"oid", "corrected"} <= set(objects.columns):
        known = objects.drop_duplicates("oid", keep="last")
        table = pd.Series(
            known["corrected"].astype("boolean").to_numpy(), index=known["oid"].astype("str").to_numpy()
        )
        looked = table.reindex(oids)
        out = np.where(looked.notna().to_numpy(), looked.fillna(False).to_numpy(dtype=bool), out)
    return out


def band_means(magstats: pd.DataFrame, objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean g and r magnitude per ``oid`` as the features use them (corrected objects: ``magmean_corr``)."""
    require_columns(magstats, REQUIRED_MAGSTATS, "band_means() magstats")
    oid = magstats["oid"].astype("str").to_numpy()
    oids = pd.Index(np.unique(oid), name="oid")
    corrected = _corrected(magstats, objects, oids)
    band = pd.to_numeric(magstats["fid"], errors="coerce").map(G_R_FIDS).to_numpy(dtype=object)
    raw = as_float(magstats["magmean"])
    corr = as_float(magstats["magmean_corr"])
    use_corr = corrected[oids.get_indexer(oid)]
    mag = np.where(use_corr, corr, raw)
    out = pd.DataFrame(index=oids)
    for b in ("g", "r"):
        sel = band == b
        per = pd.Series(mag[sel], index=oid[sel]).groupby(level=0).last()
        out[b] = per.reindex(oids).to_numpy(dtype=np.float64)
    return out


def catalog_colours(
    xmatch: pd.DataFrame,
    magstats: pd.DataFrame,
    catalog: str = "allwise",
    *,
    objects: pd.DataFrame | None = None,
    vega_to_ab: bool = False,
) -> pd.DataFrame:
    """ALeRCE's WISE colour features per ``oid`` (``COLOUR_COLUMNS``), indexed by oid.

    The index is every oid of ``magstats`` and of ``catalog``'s xmatch rows, sorted; NaN where a term is
    missing. ``objects`` (optional, with ``oid``, ``corrected``) decides which objects use corrected
    magnitudes; ``vega_to_ab`` converts the WISE magnitudes to AB first (not ALeRCE's convention).
    """
    wise = wise_bands(xmatch, catalog)
    mean = band_means(magstats, objects)
    oids = wise.index.union(mean.index).sort_values()
    oids.name = "oid"
    w = wise.reindex(oids)
    if vega_to_ab:
        w = w + pd.Series(WISE_VEGA_TO_AB)
    m = mean.reindex(oids)
    out = pd.DataFrame(
        {
            "W1-W2": w["W1"] - w["W2"],
            "W2-W3": w["W2"] - w["W3"],
            "g-W2": m["g"] - w["W2"],
            "g-W3": m["g"] - w["W3"],
            "r-W2": m["r"] - w["W2"],
            "r-W3": m["r"] - w["W3"],
        },
        index=oids,
    )
    return out.astype(np.float64)
