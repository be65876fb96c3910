"""The per-region science as steps over one dataclass, pure (no I/O): what a region task composes.

A region task starts a :class:`RegionState` from the region's rows of the batch, and each step returns a new
state with the fields it computes filled in. The steps here need nothing but the rows: correction, magstats and
object statistics, light-curve features, the alert-internal neighbours and the catalogue colours. Steps that
read storage or models (history merge, cross-match, classification) live in ``alert_broker.pipeline.steps``
and take the same state, so a region task is one loop over a list of steps.

``science()`` runs the pure chain on a set of tables in one call (training and evaluation use it, so the
features a model learns from are exactly those the pipeline computes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pandas as pd

from alert_broker.features.colours import catalog_colours
from alert_broker.features.correction import correct
from alert_broker.features.fluxstats import apparent_from_science_flux, flux_stats
from alert_broker.features.lightcurve import compute_features, compute_flux_features
from alert_broker.features.magstats import magstats
from alert_broker.features.neighbours import alert_neighbours
from alert_broker.features.objects import object_stats
from alert_broker.features.tables import Tables


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass
class RegionState:
    """Everything known about one sky region of one batch, filled in step by step.

    ``batch`` holds the rows this batch brought (what the lake files as this batch's), ``tables`` the rows the
    science sees (the batch merged with the objects' stored history, when a history step ran). Every other field
    is one step's output; a step that does not apply leaves its field empty."""

    batch: Tables
    tables: Tables
    detections: pd.DataFrame = field(default_factory=_empty)  # corrected detections (batch + history)
    magstats: pd.DataFrame = field(default_factory=_empty)  # one row per (object, band)
    objects: pd.DataFrame = field(default_factory=_empty)  # one row per object
    features: pd.DataFrame = field(default_factory=_empty)  # the wide light-curve feature vector per object
    flux_features: pd.DataFrame = field(default_factory=_empty)  # difference-flux features (LSST objects)
    neighbours: pd.DataFrame = field(default_factory=_empty)  # the alerts' own PS1/Gaia/SSO neighbours
    xmatch: pd.DataFrame = field(default_factory=_empty)  # nearest catalogue source per (object, catalogue)
    probabilities: pd.DataFrame = field(default_factory=_empty)  # ALeRCE's long probability rows
    outliers: pd.DataFrame = field(default_factory=_empty)  # outlier score per classified object
    associations: pd.DataFrame = field(default_factory=_empty)  # cross-survey ids of new objects
    failed: pd.DataFrame = field(default_factory=_empty)  # alerts whose science failed (dead letters)

    @property
    def alerts(self) -> pd.DataFrame:
        """The alerts of this batch in the region (those of failed objects removed)."""
        return self.batch.alerts

    @classmethod
    def start(cls, batch: Tables) -> RegionState:
        return cls(batch=batch, tables=batch)

    def without(self, oids: Iterable[str]) -> RegionState:
        """This state with every row of the objects ``oids`` removed (from the inputs and every output)."""
        oids = set(oids)
        if not oids:
            return self
        changes = {
            name: _drop_oids(value, oids)
            for name, value in vars(self).items()
            if isinstance(value, pd.DataFrame) and name != "failed"
        }
        return replace(
            self, batch=only_objects(self.batch, oids, keep=False), tables=only_objects(self.tables, oids, False),
            **changes,
        )  # fmt: skip

    def restricted_to(self, oids: Iterable[str]) -> RegionState:
        """The inputs of this state for the objects ``oids`` only, outputs cleared (to re-run steps on them)."""
        oids = set(oids)
        return type(self)(
            batch=only_objects(self.batch, oids, True), tables=only_objects(self.tables, oids, True)
        )


#: A pure step: a state in, the state with its fields filled in out.
PureStep = Callable[[RegionState], RegionState]


def _drop_oids(df: pd.DataFrame, oids: set) -> pd.DataFrame:
    if df.empty or "oid" not in df.columns:
        return df
    return df[~df["oid"].isin(oids)]


def only_objects(tables: Tables, oids: set, keep: bool) -> Tables:
    """The rows of ``tables`` whose oid is (keep=True) or is not (keep=False) in ``oids``."""
    out = Tables()
    for name, df in tables.items():
        if not df.empty and "oid" in df.columns:
            df = df[df["oid"].isin(oids) == keep]
        setattr(out, name, df)
    return out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def merge_pieces(pieces: list[Tables]) -> Tables:
    """One region's tables from its pieces; a detection seen in two pieces is kept once."""
    merged = Tables(**{name: _concat([getattr(p, name) for p in pieces]) for name, _ in Tables().items()})
    if not merged.detections.empty:
        det = merged.detections
        if "has_stamp" in det.columns and det.duplicated(["oid", "candid"]).any():
            # the alert's own detection (it has the PS1 neighbour, stamps) wins over a history copy of it
            det = det.sort_values("has_stamp", kind="stable")
        merged.detections = det.drop_duplicates(["oid", "candid"], keep="last").sort_index()
    if not merged.non_detections.empty:
        merged.non_detections = merged.non_detections.drop_duplicates(["oid", "fid", "mjd"], keep="last")
    if not merged.forced_photometry.empty and "pid" in merged.forced_photometry:
        merged.forced_photometry = merged.forced_photometry.drop_duplicates(["oid", "pid"], keep="last")
    return merged


# ------------------------------------------------------------------------------------------ the pure steps
def correct_step(state: RegionState) -> RegionState:
    """Light-curve correction of every detection (features.correction); for surveys that measure the science
    flux (LSST), the apparent magnitude from it (features.fluxstats)."""
    det = state.tables.detections
    return replace(state, detections=apparent_from_science_flux(correct(det)) if not det.empty else det)


def magstats_step(state: RegionState) -> RegionState:
    """Magnitude statistics per (object, band), then object statistics."""
    if state.detections.empty:
        return state
    ms = magstats(state.detections, state.tables.non_detections)
    objects = object_stats(state.detections, ms)
    fluxes = flux_stats(state.detections)
    if (
        not fluxes.empty
    ):  # surveys that report difference fluxes: their per-band statistics beside the magnitudes
        ms = ms.merge(fluxes, on=["oid", "fid"], how="left")
    return replace(state, magstats=ms, objects=objects)


def features_step(state: RegionState, feature_version: str | None = None) -> RegionState:
    """Light-curve features of the objects with enough detections, tagged with their last mjd and night, under
    ``feature_version`` (default the current ``FEATURE_VERSION``; the pipeline asks for the version its
    light-curve classifier was trained on)."""
    if state.detections.empty:
        return state
    feats = compute_features(
        state.detections, state.tables.non_detections, state.objects, feature_version=feature_version
    )
    if not feats.empty:
        feats = feats.join(state.objects.set_index("oid")[["lastmjd", "night"]], on="oid")
    return replace(state, features=feats)


def _flux_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of surveys that report difference fluxes (those with a ``psfFlux``), as flux light curves."""
    if df.empty or "psfFlux" not in df.columns:
        return pd.DataFrame()
    rows = df[df["psfFlux"].notna().to_numpy()]
    if rows.empty:
        return rows
    return pd.DataFrame(
        {
            "oid": rows["oid"].to_numpy(),
            "band": rows["band"].astype(str).to_numpy(),
            "mjd": rows["mjd"].to_numpy(dtype=float),
            "flux": rows["psfFlux"].to_numpy(dtype=float),
            "flux_err": rows["psfFluxErr"].to_numpy(dtype=float),
        }
    )


def flux_features_of(detections: pd.DataFrame, forced: pd.DataFrame | None = None) -> pd.DataFrame:
    """The difference-flux features of the objects of flux surveys (rows with a ``psfFlux``: LSST) among
    ``detections``, with their forced photometry; empty when there are none."""
    det = _flux_rows(detections)
    if det.empty:
        return pd.DataFrame()
    fp = _flux_rows(forced) if forced is not None else pd.DataFrame()
    return compute_flux_features(det, fp if not fp.empty else None)


def flux_features_step(state: RegionState) -> RegionState:
    """Light-curve features from the difference fluxes of the objects of flux surveys (LSST), with their
    forced photometry; tagged with their last mjd and night like the magnitude features."""
    feats = flux_features_of(state.detections, state.tables.forced_photometry)
    if feats.empty:
        return state
    if not state.objects.empty:
        feats = feats.join(state.objects.set_index("oid")[["lastmjd", "night"]], on="oid")
    return replace(state, flux_features=feats)


def neighbours_step(state: RegionState) -> RegionState:
    """The PS1 / Gaia / solar-system neighbours the batch's alerts carry."""
    alerts = state.batch.alerts
    return replace(state, neighbours=alert_neighbours(alerts) if not alerts.empty else pd.DataFrame())


def colours_step(state: RegionState, catalog: str = "allwise") -> RegionState:
    """ALeRCE's catalogue colours (W1-W2, g-W2, ...) joined to the features, from the ``catalog`` matches."""
    if state.features.empty or state.xmatch.empty:
        return state
    colours = catalog_colours(state.xmatch, state.magstats, catalog, objects=state.objects)
    return replace(state, features=state.features.join(colours, on="oid"))


#: The science every region runs, in order (features only where asked for: see ``science``).
SCIENCE_STEPS: tuple[PureStep, ...] = (correct_step, magstats_step, features_step, flux_features_step)


def science(tables: Tables, with_features: bool = True) -> RegionState:
    """Correction, magstats, object statistics and (``with_features``) light-curve features of ``tables``, as
    a region task computes them."""
    state = RegionState.start(tables)
    for step in SCIENCE_STEPS:
        if step in (features_step, flux_features_step) and not with_features:
            continue
        state = step(state)
    return state
