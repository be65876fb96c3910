"""Image cutouts: science, template and difference stamps rendered with a PSF, noise, hosts and artefacts.

Rendering and compressing three FITS stamps costs ~3 ms, more than everything else an alert needs, so stamps
come from a *bank*: a cell is the scene type (point source on a star, transient on a galaxy, bare transient,
artefact kinds, asteroid trail) x difference-magnitude bin (0.5 mag) x sign x reference-magnitude bin (1 mag) x
host-offset bin x image-quality bin x realisation. A cell is rendered the first time an alert needs it (seeded
by the cell's key, so the bytes never depend on the order) and its encoded bytes are reused afterwards; the
stamps then agree with the alert's magnitudes to within the bin width.

ZTF stamps are 63x63 float32 gzipped FITS in DN with the same 6-card header as real ones (a negative candidate's
difference cutout is reference minus science, as ZTF publishes it: the candidate is bright); LSST stamps are 30x30
nJy FITS with image, variance (UNCERT) and PSF (PSFIMAGE) HDUs and a TAN WCS whose CRVAL is patched per alert.
"""

from __future__ import annotations

import gzip
import io
from functools import lru_cache

import numpy as np
from astropy.io import fits

from .rng import stream

KINDS = (
    "star", "galaxy", "bare", "trail", "hot_pixel", "dipole", "cosmic_ray", "streak", "ghost", "bullseye",
    "offset_dipole",
)  # fmt: skip
#: Rubin's artefacts in place of ZTF's single-pixel ones (Rubin interpolates hot pixels and cosmic rays): the
#: real LSST alerts' artefacts are dipoles, rings around bright stars and a neighbour's residual off the centre.
LSST_ARTEFACT_KINDS = {"hot_pixel": "bullseye", "cosmic_ray": "offset_dipole"}
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
#: Scenes whose rendered difference carries the candidate's sign (negative flux in science minus reference for a
#: negative candidate); the other kinds are drawn bright in the difference whatever the sign.
SIGNED_KINDS = frozenset({"star", "galaxy", "bare", "trail", "dipole"})
OFFSET_EDGES = np.array([1.4, 4.0])  # arcsec: host offset bins (< 1.4 is where ALeRCE "corrects")
QUALITY_EDGES = {"ztf": np.array([19.6, 20.35]), "lsst": np.array([23.6, 24.3])}
#: FWHM of ZTF reference-image (template) point sources [pixels]: Moffat fits to the bright variable stars of the
#: labelled real stamps give 2.18 (ALeRCE's 18) and 2.14 (87 SIMBAD-labelled), scatter ~0.15.
REF_FWHM_PIX = 2.15
#: FWHM of Rubin template point sources [pixels of 0.2"]: the PSF images of the real cutouts' templates give
#: 3.9-5.0 (median 4.4) on three nights; 4.2 with a 10% scatter.
LSST_REF_FWHM_PIX = 4.2
#: Share of Rubin cutouts with a strip of masked pixels (a detector edge): 2.4% of the real ones carry NaN pixels,
#: 1% more zero-filled ones.
LSST_EDGE_SHARE = 0.03


# ------------------------------------------------------------------------------------------ primitives -----
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(float)
    return x - c, y - c


def gaussian_psf(
    size: int, fwhm_pix: float, dx: float = 0.0, dy: float = 0.0, elong: float = 1.0
) -> np.ndarray:
    """Unit-sum Gaussian PSF centred at (dx, dy) pixels from the stamp centre."""
    x, y = _grid(size)
    s = fwhm_pix / 2.3548
    img = np.exp(-0.5 * (((x - dx) / (s * elong)) ** 2 + ((y - dy) / s) ** 2))
    return img / (2 * np.pi * s * s * elong)


def moffat_psf(
    size: int, fwhm_pix: float, dx: float = 0.0, dy: float = 0.0, elong: float = 1.0, beta: float = 3.5
) -> np.ndarray:
    """Unit-total Moffat PSF (Moffat 1969) centred at (dx, dy): a Gaussian-like core with power-law wings,
    I ~ (1 + r^2/alpha^2)^-beta, FWHM = 2 alpha sqrt(2^(1/beta) - 1). Real ZTF point sources are Moffat with
    beta ~3.5 (fits to the labelled real stamps, docs/simulator.md); a Gaussian of the same FWHM puts ~95% of
    the light in the central 3x3 pixels of a 2" template where real templates have ~60%."""
    x, y = _grid(size)
    alpha = fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r2 = ((x - dx) / elong) ** 2 + (y - dy) ** 2
    return (beta - 1.0) / (np.pi * alpha * alpha * elong) * (1.0 + r2 / (alpha * alpha)) ** (-beta)


def exponential_galaxy(
    size: int, re_pix: float, q: float, pa_deg: float, dx: float, dy: float, fwhm_pix: float
) -> np.ndarray:
    """Unit-total exponential disk (scale h = R_e / 1.678), its core softened by the PSF width."""
    x, y = _grid(size)
    t = np.deg2rad(pa_deg)
    u = (x - dx) * np.cos(t) + (y - dy) * np.sin(t)
    v = -(x - dx) * np.sin(t) + (y - dy) * np.cos(t)
    h = max(re_pix / 1.678, 0.3)
    r = np.sqrt(u**2 + (v / q) ** 2 + (fwhm_pix / 2.3548) ** 2)
    img = np.exp(-r / h)
    return img / (
        2 * np.pi * h * h * q
    )  # analytic total: light beyond the stamp is lost, as in a real cutout


def _smooth(img: np.ndarray, sigma_pix: float) -> np.ndarray:
    """``img`` convolved with a unit-sum Gaussian of ``sigma_pix`` (separable, edges reflected)."""
    r = int(np.ceil(3 * sigma_pix))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_pix) ** 2)
    k /= k.sum()
    pad = np.pad(img, r, mode="reflect")
    rows = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, pad)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, rows)


def _neighbours(rng, size: int, zp: float, fwhm: float, density: float) -> np.ndarray:
    """Unrelated field stars (same in template and science, so they cancel in the difference)."""
    img = np.zeros((size, size))
    for _ in range(rng.poisson(density)):
        m = np.log10(10 ** (0.3 * 15) + (10 ** (0.3 * 22) - 10 ** (0.3 * 15)) * rng.random()) / 0.3
        dx, dy = rng.uniform(-size / 2, size / 2, 2)
        img += 10 ** (-0.4 * (m - zp)) * gaussian_psf(size, fwhm, dx, dy)
    return img


# ------------------------------------------------------------------------------------------------ scenes ----
def render_scene(
    key: tuple, survey: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(science, template, difference, difference variance, PSF fwhm, template PSF fwhm [px]) for one bank
    cell."""
    kind_i, dmag_bin, sign, rmag_bin, off_bin, qual, _real = key
    kind = KINDS[kind_i]
    rng = stream(seed, "stamp", survey, *[int(k) % 2**32 for k in key])
    if survey == "ztf":
        size, scale, zp = 63, 1.012, 26.25
        seeing = (1.7, 2.2, 3.0)[qual] * np.exp(rng.normal(0, 0.1))
        sky = (150.0, 210.0, 400.0)[qual] * np.exp(rng.normal(0, 0.5))
        sig_sci = np.sqrt(sky / 4.5 + 4.0)  # sky Poisson noise (effective gain) plus read noise [DN]
        sig_tpl = sig_sci / np.sqrt(rng.uniform(4, 50))  # coadd of a few to ~50 frames
        density = 2.0
    else:
        # Calibrated on the 207 real Rubin alerts of the shared data (docs/simulator.md, "LSST cutouts"): sky
        # noise from the depth of the quality bin (a 5-sigma point source at m5 over the PSF's noise-equivalent
        # area, so that the cutouts' noise agrees with the alerts' psfFluxErr), a template ~5x less noisy than the
        # science with pixel-correlated noise (a warped coadd), seeing up to 1.4", Moffat PSFs (science
        # beta ~8, template ~3.5-6) and a template PSF of its own (~0.84" whatever the night's seeing).
        size, scale, zp = 30, 0.2, 31.4
        seeing = (0.7, 0.95, 1.4)[qual] * np.exp(rng.normal(0, 0.2))
        sky = 0.0
        m5 = (24.6, 23.95, 23.3)[qual]
        sigma_psf = seeing / scale / 2.3548
        sig_sci = 10 ** (-0.4 * (m5 - zp)) / (5.0 * np.sqrt(4.0 * np.pi) * sigma_psf)
        sig_tpl = sig_sci * 0.18 * np.exp(rng.normal(0, 0.3))
        density = 0.3
    fwhm = seeing / scale
    if survey == "ztf":
        # Moffat PSFs with the wings of real ZTF stamps (beta ~3.5); the reference image's PSF is the survey's
        # stacked one, ~2.15 px FWHM whatever the science seeing (fits to real templates, docs/simulator.md).
        beta_sci, beta_tpl = rng.uniform(2.5, 4.5), rng.uniform(2.5, 4.5)
        tpl_fwhm = REF_FWHM_PIX * np.exp(rng.normal(0, 0.07))

        def psf(fw, *pos, elong=1.0, template=False):
            return moffat_psf(size, fw, *pos, elong=elong, beta=beta_tpl if template else beta_sci)
    else:
        beta_sci, beta_tpl = rng.uniform(6.0, 10.0), rng.uniform(3.5, 6.0)
        tpl_fwhm = LSST_REF_FWHM_PIX * np.exp(rng.normal(0, 0.1))

        def psf(fw, *pos, elong=1.0, template=False):
            return moffat_psf(size, fw, *pos, elong=elong, beta=beta_tpl if template else beta_sci)

    dflux = sign * 10 ** (-0.4 * (dmag_bin * 0.5 - zp))
    rflux = 10 ** (-0.4 * (rmag_bin - zp)) if rmag_bin > 0 else 0.0
    off = (0.6, 2.5, 6.0)[off_bin] / scale
    ang = rng.uniform(0, 2 * np.pi)
    sub = rng.uniform(-0.5, 0.5, 2)  # sub-pixel position of the source
    static = _neighbours(rng, size, zp, fwhm, density)
    # A new source in the difference has the PSF of the subtraction: the science one, or the template's where the
    # template is the wider and the science is convolved to match it (Rubin's subtraction decides per visit).
    dfwhm = fwhm if survey == "ztf" else max(fwhm, tpl_fwhm)
    t_static = static.copy()
    sci_add = np.zeros((size, size))
    dif = np.zeros((size, size))
    if kind == "star":
        t_static += rflux * psf(tpl_fwhm, *sub, template=True)
        static += rflux * psf(fwhm, *sub)
        sci_add = dflux * psf(fwhm, *sub)
        dif = dflux * psf(dfwhm, *sub)
    elif kind == "galaxy":
        re = rng.uniform(1.0, 4.0) / scale
        q, pa = rng.uniform(0.4, 1.0), rng.uniform(0, 180)
        gdx, gdy = off * np.cos(ang), off * np.sin(ang)
        host_total = rflux * 3.0  # magnr is the core's PSF magnitude; the whole galaxy is brighter
        t_static += host_total * exponential_galaxy(size, re, q, pa, gdx, gdy, tpl_fwhm)
        static += host_total * exponential_galaxy(size, re, q, pa, gdx, gdy, fwhm)
        sci_add = dflux * psf(fwhm, *sub)
        dif = dflux * psf(dfwhm, *sub)
    elif kind in ("bare", "trail"):
        elong = rng.uniform(2.0, 5.0) if kind == "trail" else 1.0
        sci_add = dflux * psf(fwhm, *sub, elong=elong)
        dif = dflux * psf(dfwhm, *sub, elong=elong) if survey == "lsst" else sci_add
    elif kind == "hot_pixel":
        px = np.zeros((size, size))
        i, j = (size // 2 + rng.integers(-1, 2, 2)).tolist()
        px[i, j] = abs(dflux) * rng.uniform(0.5, 0.9)
        px[i + rng.integers(-1, 2), j] += abs(dflux) * rng.uniform(0.0, 0.2)
        sci_add, dif = px, px.copy()
    elif kind == "cosmic_ray":
        px = np.zeros((size, size))
        n = rng.integers(3, 9)
        t = rng.uniform(0, np.pi)
        for s in range(n):
            i = int(np.clip(size // 2 + round(s * np.sin(t)), 0, size - 1))
            j = int(np.clip(size // 2 + round(s * np.cos(t)), 0, size - 1))
            px[i, j] += abs(dflux) / n * rng.uniform(0.7, 1.3)
        sci_add, dif = px, px.copy()
    elif kind == "dipole":
        star = 10 ** (-0.4 * ((rmag_bin if rmag_bin > 0 else 13.0) - zp))
        t_static += star * psf(tpl_fwhm, *sub, template=True)
        static += star * psf(fwhm, *sub)
        shift = (
            rng.uniform(0.4, 1.2) if survey == "ztf" else rng.uniform(1.0, 1.5)
        )  # LSST: lobes 2-3 px apart
        d = np.array([np.cos(ang), np.sin(ang)]) * shift
        dif = abs(dflux) * (psf(fwhm, *(sub + d)) - psf(fwhm, *(sub - d)))
        dif *= np.sign(dflux)
        sci_add = np.zeros((size, size))
    elif kind == "streak":
        x, y = _grid(size)
        t = rng.uniform(0, np.pi)
        dist = np.abs((x - sub[0]) * np.sin(t) - (y - sub[1]) * np.cos(t))
        line = np.exp(-0.5 * (dist / (fwhm / 2.3548)) ** 2)
        line *= abs(dflux) / line.sum() * size / 8
        sci_add, dif = line, line.copy()
    elif kind == "bullseye":
        # a bright star's residual: a core and a ring of opposite signs (a PSF mismatch), detected at the centre
        star = 10 ** (-0.4 * (rng.uniform(15.5, 18.5) - zp))
        t_static += star * psf(tpl_fwhm, *sub, template=True)
        static += star * psf(fwhm, *sub)
        ring = psf(dfwhm, *sub) - psf(dfwhm * rng.uniform(1.3, 1.8), *sub)
        dif = abs(dflux) * ring / ring.max() * psf(dfwhm).max() * rng.choice((-1.0, 1.0))
    elif kind == "offset_dipole":
        # a neighbour's bad subtraction 1.2-2.6" away; the detection at the centre is its wing or the noise
        star = 10 ** (-0.4 * (rng.uniform(16.0, 19.0) - zp))
        at = sub + np.array([np.cos(ang), np.sin(ang)]) * rng.uniform(1.2, 2.6) / scale
        t_static += star * psf(tpl_fwhm, *at, template=True)
        static += star * psf(fwhm, *at)
        d = np.array([np.cos(ang + 1.0), np.sin(ang + 1.0)]) * rng.uniform(1.0, 1.5)
        dif = 2.0 * abs(dflux) * (psf(dfwhm, *(at + d)) - psf(dfwhm, *(at - d)))
    elif kind == "ghost":
        p = gaussian_psf(size, fwhm * rng.uniform(3, 6), *(rng.uniform(-3, 3, 2)))
        sci_add = abs(dflux) * p
        dif = abs(dflux) * p
    sci = sky + static + sci_add
    tpl = sky + t_static
    # Poisson noise of bright sources (ZTF gain 6.2 e-/DN), sky noise, template noise.
    src_var = (
        np.maximum(static + sci_add, 0.0) / 6.2
        if survey == "ztf"
        else np.maximum(static + sci_add, 0.0) * 0.05
    )
    n_sci = rng.standard_normal((size, size)) * np.sqrt(sig_sci**2 + src_var)
    n_tpl = rng.standard_normal((size, size))
    if survey == "lsst":  # a coadd's noise is correlated between neighbouring pixels (warping): ~0.6 real
        n_tpl = _smooth(n_tpl, 0.7)
        n_tpl /= n_tpl.std()
    n_tpl *= sig_tpl
    sci = sci + n_sci
    tpl = tpl + n_tpl
    diff = dif + n_sci - n_tpl
    var = np.full((size, size), sig_sci**2 + sig_tpl**2) + src_var
    if survey == "lsst" and rng.random() < LSST_EDGE_SHARE:
        # a cutout at a detector's edge: a strip without data (NaN, infinite variance), as ~3% of real ones
        width, side = int(rng.integers(2, 12)), int(rng.integers(0, 4))
        strip = np.zeros((size, size), bool)
        strip[:, :width] = True
        strip = np.rot90(strip, side)
        for a in (sci, tpl, diff):
            a[strip] = np.nan
        var[strip] = np.inf
    return (
        sci.astype(np.float32),
        tpl.astype(np.float32),
        diff.astype(np.float32),
        var.astype(np.float32),
        fwhm,
        tpl_fwhm,
    )


# ------------------------------------------------------------------------------------------------ FITS ------
#: Side of the PSF image extension of a Rubin cutout [pixels].
LSST_PSF_SIZE = 41


@lru_cache(maxsize=8)
def _fits_template(
    kind: str, size: int, psf_size: int = LSST_PSF_SIZE
) -> tuple[bytes, tuple[tuple[int, int, str], ...]]:
    """A FITS file written once by astropy, and where each HDU's data lies in it: (offset, nbytes, dtype).

    Stamps of a survey share one layout, so new stamps splice their pixels into this template instead of going
    through astropy's (slow, ~1 ms) writer every time; astropy reads the result back identically (tested).
    """
    img = np.zeros((size, size), dtype=">f4")
    if kind == "ztf":
        hdu = fits.PrimaryHDU(img)
        hdu.header["BUNIT"] = "DN"
        del hdu.header["EXTEND"]
        hdul = fits.HDUList([hdu])
    else:
        hdr = fits.Header()
        hdr["BUNIT"] = "nJy"
        hdr["WCSAXES"] = 2
        hdr["CRPIX1"] = (size + 1) / 2.0
        hdr["CRPIX2"] = (size + 1) / 2.0
        hdr["CDELT1"] = -0.2 / 3600.0
        hdr["CDELT2"] = 0.2 / 3600.0
        hdr["CUNIT1"] = "deg"
        hdr["CUNIT2"] = "deg"
        hdr["CTYPE1"] = "RA---TAN"
        hdr["CTYPE2"] = "DEC--TAN"
        hdr["CRVAL1"] = 0.0
        hdr["CRVAL2"] = 0.0
        unc = fits.ImageHDU(img.copy(), name="UNCERT")
        unc.header["UTYPE"] = "VarianceUncertainty"
        psf = fits.ImageHDU(np.zeros((psf_size, psf_size), dtype=">f8"), name="PSFIMAGE")
        hdul = fits.HDUList([fits.PrimaryHDU(img, header=hdr), unc, psf])
    buf = io.BytesIO()
    hdul.writeto(buf)
    data = buf.getvalue()
    with fits.open(io.BytesIO(data)) as back:
        locs = tuple(
            (back.fileinfo(i)["datLoc"], back[i].data.nbytes, back[i].data.dtype.str)
            for i in range(len(back))
        )
    return data, locs


def _splice(kind: str, arrays: list[np.ndarray]) -> bytes:
    size = arrays[0].shape[0]
    tpl, locs = _fits_template(kind, size)
    out = bytearray(tpl)
    for (off, nbytes, dt), a in zip(locs, arrays, strict=True):
        b = np.ascontiguousarray(a, dtype=dt).tobytes()
        if len(b) != nbytes:
            raise ValueError(f"stamp of {len(b)} bytes does not fit the {nbytes}-byte template")
        out[off : off + nbytes] = b
    return bytes(out)


def ztf_fits_gz(img: np.ndarray) -> bytes:
    """A ZTF alert stamp: 6-card primary header (BUNIT = DN), big-endian float32, gzipped (mtime 0)."""
    return gzip.compress(_splice("ztf", [img]), compresslevel=6, mtime=0)


def lsst_fits(img: np.ndarray, var: np.ndarray, fwhm_pix: float, beta: float = 8.0) -> bytes:
    """An LSST cutout: nJy image with a TAN WCS (CRVAL patched per alert), variance and PSF extensions (a
    41 x 41 Moffat, as real cutouts carry: the science's beta ~8, the template's ~4.5)."""
    return _splice("lsst", [img, var, moffat_psf(LSST_PSF_SIZE, fwhm_pix, beta=beta)])


def patch_card(data: bytes, key: str, value: float) -> bytes:
    """Replace the value of a numeric header card in the primary header (fixed 80-char cards)."""
    k = key.ljust(8).encode()
    head = data[: 2880 * 4]
    pos = -1
    for i in range(0, len(head), 80):
        if head[i : i + 8] == k:
            pos = i
            break
    if pos < 0:
        raise KeyError(f"FITS card {key} not found")
    card = f"{key:<8}= {value:>20.12f}".ljust(80).encode()
    return data[:pos] + card + data[pos + 80 :]


# ------------------------------------------------------------------------------------------------ bank ------
class StampBank:
    """Rendered, encoded stamp triplets per cell, created on first use."""

    def __init__(self, survey: str, seed: int = 0, variants: int = 3):
        self.survey = survey
        self.seed = seed
        self.variants = variants
        self._cells: dict[tuple, tuple[bytes, bytes, bytes]] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def keys(
        self,
        kind: np.ndarray,
        dmag: np.ndarray,
        sign: np.ndarray,
        rmag: np.ndarray,
        offset: np.ndarray,
        maglim: np.ndarray,
        rng: np.random.Generator,
    ) -> list[tuple]:
        """Quantise per-alert scene parameters into bank cells (one tuple per alert)."""
        lo, hi = (12.0, 22.5) if self.survey == "ztf" else (16.0, 26.0)
        dm = np.round(np.clip(dmag, lo, hi) * 2).astype(int)
        has_ref = np.isfinite(rmag) & np.isin(
            kind, [KIND_INDEX["star"], KIND_INDEX["galaxy"], KIND_INDEX["dipole"]]
        )
        rm = np.where(has_ref, np.round(np.clip(np.nan_to_num(rmag, nan=20.0), lo - 2, hi + 1)), 0).astype(
            int
        )
        ob = np.where(
            kind == KIND_INDEX["galaxy"], np.searchsorted(OFFSET_EDGES, np.nan_to_num(offset, nan=0.0)), 0
        )
        qb = 2 - np.searchsorted(QUALITY_EDGES[self.survey], maglim)
        real = rng.integers(0, self.variants, len(kind))
        return list(
            zip(
                kind.tolist(),
                dm.tolist(),
                np.where(sign < 0, -1, 1).tolist(),
                rm.tolist(),
                ob.tolist(),
                qb.tolist(),
                real.tolist(),
                strict=True,
            )
        )

    def get(self, key: tuple) -> tuple[bytes, bytes, bytes]:
        """(science, template, difference) encoded as the survey's cutouts."""
        cell = self._cells.get(key)
        if cell is None:
            sci, tpl, dif, var, fwhm, tpl_fwhm = render_scene(key, self.survey, self.seed)
            if self.survey == "ztf":
                # ZTF publishes the difference cutout of a negative candidate (isdiffpos 'f') from the negative
                # (reference minus science) subtraction: the source is bright in it, as in a positive one.
                # Artefacts are rendered bright in the difference whatever the sign: they stay as they are.
                flip = key[2] < 0 and KINDS[key[0]] in SIGNED_KINDS
                cutout = -dif if flip else dif
                cell = (ztf_fits_gz(sci), ztf_fits_gz(tpl), ztf_fits_gz(cutout))
            else:
                cell = (
                    lsst_fits(sci, var, fwhm),
                    lsst_fits(tpl, var / 30.0, tpl_fwhm, beta=4.5),
                    lsst_fits(dif, var, max(fwhm, tpl_fwhm)),
                )
            self._cells[key] = cell
        return cell
