"""Splitting a wide feature column into the feature and its band, as the API answers them."""

from __future__ import annotations

from alert_broker.features.lightcurve import feature_names, flux_feature_names, split_feature_name
from alert_broker.features.lightcurve.api import OBJECT_NAMES, PER_BAND_NAMES
from alert_broker.features.lightcurve.flux import FLUX_BAND_NAMES, FLUX_OBJECT_NAMES


def test_every_ztf_column_splits_into_a_per_band_feature_or_an_object_level_one():
    names = feature_names()
    split = [split_feature_name(n) for n in names]
    per_band = [(f, b) for f, b in split if b is not None]
    assert len(per_band) == 2 * len(PER_BAND_NAMES) and {b for _, b in per_band} == {1, 2}
    assert {f for f, _ in per_band} == set(PER_BAND_NAMES)
    assert [f for f, b in split if b is None] == list(OBJECT_NAMES)
    assert all(f"{f}_{b}" == n for n, (f, b) in zip(names, split, strict=True) if b is not None)


def test_suffixes_that_look_like_bands_but_are_not():
    assert split_feature_name("Power_rate_2") == ("Power_rate_2", None)  # the power at twice the period
    assert split_feature_name("Power_rate_1/2") == ("Power_rate_1/2", None)
    assert split_feature_name("Harmonics_mag_2_1") == ("Harmonics_mag_2", 1)
    assert split_feature_name("Amplitude_3") == ("Amplitude_3", None)  # ZTF's i band has no features
    assert split_feature_name("nothing_we_know_1") == ("nothing_we_know_1", None)


def test_lsst_flux_columns_split_by_band_letter():
    names = flux_feature_names()
    split = [split_feature_name(n) for n in names]
    assert {b for _, b in split if b is not None} == set("ugrizy")
    assert {f for f, b in split if b is not None} == set(FLUX_BAND_NAMES)
    assert [f for f, b in split if b is None] == list(FLUX_OBJECT_NAMES)
