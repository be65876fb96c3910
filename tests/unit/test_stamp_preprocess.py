"""Stamp classifier inputs: FITS cutout decoding, centre crop and normalisation (analytic cases, real stamps)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from alert_broker.classifiers.stamp.cutouts import centre_crop, cutout_cube, decode_cutout
from alert_broker.classifiers.stamp.evaluate import load_real_stamps
from alert_broker.classifiers.stamp.preprocess import (
    CROP_SIZE,
    normalise_cutouts,
    normalise_cutouts_numpy,
    stamp_images,
)


def _gauss(size: int, y0: float, x0: float, sigma: float = 1.2) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(float)
    return np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma**2)


def _fits(img: np.ndarray, gz: bool = True, **cards) -> bytes:
    hdu = fits.PrimaryHDU(img)
    for k, v in cards.items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def test_decoder_reads_what_astropy_wrote_gzipped_or_not():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (63, 63)).astype(">f4")
    img[3, 4] = np.nan
    for gz in (True, False):
        out = decode_cutout(_fits(img, gz))
        assert out.dtype == np.float32 and out.shape == (63, 63)
        np.testing.assert_array_equal(out, img.astype(np.float32))  # NaN in the same place, values exact


def test_decoder_applies_bscale_bzero_of_integer_images():
    raw = np.arange(63 * 40, dtype=">i2").reshape(40, 63)  # NAXIS2 = 40 rows, NAXIS1 = 63 columns
    data = _fits(raw)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 10.0
    buf = io.BytesIO()
    hdu.writeto(buf)
    with fits.open(io.BytesIO(buf.getvalue())) as h:
        expected = np.asarray(h[0].data, dtype=np.float32)
    out = decode_cutout(buf.getvalue())
    assert out.shape == (40, 63)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(decode_cutout(data), raw.astype(np.float32))


@pytest.mark.parametrize(
    "bad", [None, b"", b"not a fits file at all", gzip.compress(b"SIMPLE  =  garbage", mtime=0)]
)
def test_absent_or_unreadable_cutouts_are_none(bad):
    assert decode_cutout(bad) is None


def test_centre_crop_keeps_a_centred_psf_peak_at_the_crop_centre():
    img = _gauss(63, 31, 31)
    crop = centre_crop(img, CROP_SIZE)
    assert crop.shape == (21, 21)
    assert np.unravel_index(np.argmax(crop), crop.shape) == (10, 10)
    np.testing.assert_allclose(crop, img[21:42, 21:42])


def test_centre_crop_moves_an_offset_peak_by_the_offset():
    crop = centre_crop(_gauss(63, 31 + 3, 31 - 2), CROP_SIZE)
    assert np.unravel_index(np.argmax(crop), crop.shape) == (13, 8)


def test_centre_crop_of_a_truncated_cutout_pads_with_nan():
    img = np.ones((63, 15), dtype=np.float32)  # a cutout cut by a CCD edge: 15 columns
    crop = centre_crop(img, CROP_SIZE)  # centre column 7: columns -3..17 wanted, 0..14 exist
    assert np.isnan(crop[:, :3]).all() and np.isnan(crop[:, 18:]).all()
    assert (crop[:, 3:18] == 1).all()


def test_normalisation_is_min_max_and_ignores_gain_and_sky():
    g = _gauss(21, 10, 10)
    cube = np.stack([g, 7.5 * g + 300.0, -2.0 * g], axis=-1)[
        None
    ]  # science, template (scaled), difference (negative)
    out = normalise_cutouts(cube)
    assert out.dtype == np.float32 and out.shape == cube.shape
    expected = (g - g.min()) / (g.max() - g.min())
    np.testing.assert_allclose(out[0, :, :, 0], expected, atol=1e-6)
    # affine in flux: the same shape (to float32 rounding of values near 300)
    np.testing.assert_allclose(out[0, :, :, 1], expected, atol=1e-4)
    np.testing.assert_allclose(out[0, :, :, 2], 1.0 - expected, atol=1e-6)  # a negative PSF: a dark hole
    assert out[0, 10, 10, 0] == 1.0 and out[0, 10, 10, 2] == 0.0


def test_normalisation_masks_nan_inf_and_survives_flat_or_empty_cutouts():
    g = _gauss(21, 10, 10)
    sci = g.copy()
    sci[0, 0] = np.nan
    sci[0, 1] = np.inf
    cube = np.stack([sci, np.full_like(g, 5.0), np.full_like(g, np.nan)], axis=-1)[None]
    out = normalise_cutouts(cube)
    assert np.isfinite(out).all()
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 1, 0] == 0  # masked pixels -> 0
    finite = np.isfinite(sci)
    lo, hi = sci[finite].min(), sci[finite].max()  # the inf pixel does not set the scale
    np.testing.assert_allclose(out[0, 10, 10, 0], (g[10, 10] - lo) / (hi - lo), rtol=1e-6)
    assert (out[0, :, :, 1] == 0).all() and (out[0, :, :, 2] == 0).all()


def test_stamp_images_flags_alerts_without_all_three_cutouts():
    g = (1000 * _gauss(63, 31, 31) + 100).astype(np.float32)
    blob = _fits(g)
    stamps = pd.DataFrame(
        {
            "oid": ["a", "b"],
            "candid": [1, 2],
            "cutout_science": [blob, blob],
            "cutout_template": [blob, None],
            "cutout_difference": [blob, blob],
        }
    )
    images, complete = stamp_images(stamps)
    assert complete.tolist() == [True, False]
    assert images.shape == (2, 21, 21, 3)
    assert (images[1] == 0).all()
    assert images[0, 10, 10].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(KeyError, match="cutout_template"):
        cutout_cube(stamps.drop(columns="cutout_template"))


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")
def test_real_labelled_stamps_decode_and_preprocess_without_nan(shared_data):
    alerts, stamps = load_real_stamps(shared_data)
    assert len(alerts) == 51 and alerts["oid"].is_unique
    assert set(alerts["class"]) == {"SN", "AGN", "VS", "asteroid", "bogus"}
    assert alerts["has_metadata"].sum() == 21
    raw, complete = cutout_cube(stamps)
    assert complete.all()
    assert np.isnan(raw).any()  # real cutouts carry masked pixels ...
    images, complete = stamp_images(stamps)
    assert complete.all() and np.isfinite(images).all()  # ... which preprocessing removes
    assert np.array_equal(images, normalise_cutouts_numpy(raw))
    assert images.min() == 0.0 and images.max() == 1.0
    # every cutout keeps a dynamic range (none collapses to a constant)
    assert (images.max(axis=(1, 2)) == 1.0).all()
    # the fast decoder agrees with astropy on real ZTF cutouts
    for blob in stamps["cutout_difference"].iloc[:5]:
        with fits.open(io.BytesIO(gzip.decompress(blob))) as h:
            np.testing.assert_array_equal(decode_cutout(blob), np.asarray(h[0].data, dtype=np.float32))


def test_compiled_normalisation_equals_the_numpy_expression_to_the_bit():
    """Random stacks with masked and infinite pixels, flat and empty cutouts, negative and huge values."""
    rng = np.random.default_rng(11)
    cube = (rng.normal(0, 1, (40, 21, 21, 3)) * rng.choice([1e-3, 1.0, 1e4], (40, 1, 1, 3))).astype(
        np.float32
    )
    cube[rng.random(cube.shape) < 0.05] = np.nan
    cube[rng.random(cube.shape) < 0.01] = np.inf
    cube[rng.random(cube.shape) < 0.01] = -np.inf
    cube[3, :, :, 1] = 7.0  # flat
    cube[4, :, :, 2] = np.nan  # empty
    cube[5, :, :, 0] = 3e38  # a span that overflows float32: treated as no usable range
    cube[5, 0, 0, 0] = -3e38
    assert np.array_equal(normalise_cutouts(cube), normalise_cutouts_numpy(cube))
    with pytest.raises(ValueError, match="stack"):
        normalise_cutouts(cube[0])


def test_cutout_cube_copies_inside_crops_and_pads_truncated_ones_like_centre_crop():
    rng = np.random.default_rng(12)
    shapes = [(63, 63), (63, 63), (40, 63), (63, 15), (21, 21), (22, 24)]
    imgs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    decoded = {col: list(imgs) for col in ("cutout_science", "cutout_template", "cutout_difference")}
    decoded["cutout_template"][1] = None
    cube, complete = cutout_cube(pd.DataFrame(index=range(len(imgs))), CROP_SIZE, decoded)
    assert complete.tolist() == [True, False, True, True, True, True]
    for i, img in enumerate(imgs):
        if not complete[i]:
            assert np.isnan(cube[i]).all()
            continue
        for ch in range(3):
            np.testing.assert_array_equal(cube[i, :, :, ch], centre_crop(img, CROP_SIZE))
