"""The scanner model: slice timing and cardiac motion, reconstruction kernel, correlated noise.

Motion (non-gated helical scan): slice k is reconstructed from data acquired around time
t_k = (z_top - z_k) / table speed, over a window of half the rotation time; the heart beats
at ``heart_rate_bpm`` meanwhile. A coronary point moves from its end-diastolic position by
``g(phase) x amplitude``: along the long axis (the base descends towards the apex in systole,
the right AV groove most), round it (twist) and a little inwards. ``g`` rises in systole, falls
in rapid filling, rests in diastasis. Structures are averaged over M time samples of each
slice's window: blur when they move steadily, doubling when the window spans a fast jump.

Reconstruction: the object (HU, partial volume included) is filtered in-plane by the kernel's
MTF (Gaussian, MTF 50 % at ``F50`` lp/mm) and noise with the matching texture is added in the
same inverse FFT: noise power spectrum NPS(f) ~ f x MTF(f)^2 (ramp filter x apodisation),
scaled to the requested pixel SD; slices that overlap share part of their noise.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.interpolate import PchipInterpolator

from .config import Acquisition
from .heart import HeartFrame

F50 = {"soft": 0.30, "standard": 0.40, "sharp": 0.65}  # lp/mm at MTF = 0.5 (assumed, typical)
WINDOW_FRACTION = 0.5  # temporal window of one slice (half-scan reconstruction), fraction of a rotation
TIME_SAMPLES = 7

# Systolic contraction 0-0.35 of the R-R interval, isovolumic relaxation, rapid filling 0.42-0.6,
# diastasis, atrial contraction 0.85-0.95 (g = 0 at end-diastole).
_PHASE = np.array([0.0, 0.05, 0.33, 0.42, 0.60, 0.85, 0.95, 1.0])
_G = np.array([0.0, 0.03, 1.0, 1.0, 0.25, 0.15, 0.0, 0.0])
_WAVE = PchipInterpolator(_PHASE, _G)


def waveform(phase: np.ndarray) -> np.ndarray:
    return _WAVE(np.mod(phase, 1.0))


class CardiacMotion:
    """Displacement of heart-surface structures during each slice's acquisition window."""

    def __init__(self, acq: Acquisition, frame: HeartFrame, slice_z: np.ndarray, phase0: float,
                 samples: int = TIME_SAMPLES):
        self.scale = float(acq.motion_scale)
        self.frame = frame
        speed = acq.pitch * acq.collimation_mm / acq.rotation_s  # table mm/s
        self.z = np.asarray(slice_z, float)
        self.t = (acq.z_top_mm - self.z) / speed
        w = WINDOW_FRACTION * acq.rotation_s
        self.m = samples if self.scale > 0 else 1
        self.tau = np.linspace(-w / 2, w / 2, self.m) if self.m > 1 else np.zeros(1)
        self.hz = acq.heart_rate_bpm / 60.0
        self.phase0 = phase0

    @property
    def moving(self) -> bool:
        return self.scale > 0

    def basis(self, p: np.ndarray) -> np.ndarray:
        """Displacement (mm) of point ``p`` at full contraction (g = 1) with motion_scale 1."""
        f = self.frame
        t, s, u = f.local(p)
        au, ub = f.envelope[2], f.base_u
        th = np.arctan2(s, t)
        w_long = 0.6 if u < ub else float(np.clip((au - u) / (au - ub), 0.0, 1.0))
        amp_long = 9.0 + 7.0 * np.cos(th / 2) ** 2  # right AV groove (theta ~ 0) moves most
        ax = f.axes
        tang = -np.sin(th) * ax[:, 0] + np.cos(th) * ax[:, 1]
        radial = np.cos(th) * ax[:, 0] + np.sin(th) * ax[:, 1]
        return amp_long * w_long * ax[:, 2] + 3.0 * w_long * tang - 1.5 * radial

    def __call__(self, ks: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        if not self.moving:
            return np.zeros((len(ks), 1, 3))
        ph = self.phase0 + (self.t[np.asarray(ks)][:, None] + self.tau[None, :]) * self.hz
        return self.scale * waveform(ph)[:, :, None] * self.basis(anchor)[None, None, :]

    def spread(self, ks: np.ndarray, anchor: np.ndarray) -> float:
        """Largest distance (mm) the point travels within one slice's window, over slices ``ks``."""
        if not self.moving or len(ks) == 0:
            return 0.0
        d = self(ks, anchor)
        return float(np.linalg.norm(d.max(axis=1) - d.min(axis=1), axis=1).max())

    def max_displacement(self) -> float:
        return 20.0 * self.scale


def mtf_1d(kernel: str, n: int, pixel_mm: float) -> np.ndarray:
    """Gaussian MTF on the FFT frequencies of an axis of ``n`` pixels (separable in x and y)."""
    f = sfft.fftfreq(n, d=pixel_mm)
    return np.exp(-np.log(2.0) * (f / F50[kernel]) ** 2)


def psf_1d(kernel: str, n: int, pixel_mm: float, tol: float = 1e-4) -> np.ndarray:
    """The spatial kernel the FFT filtering applies along one axis, truncated where it is < tol."""
    k = np.real(sfft.ifft(mtf_1d(kernel, n, pixel_mm)))
    k = np.fft.fftshift(k)
    c = n // 2
    keep = np.flatnonzero(np.abs(k) >= tol * np.abs(k).max())
    r = int(max(c - keep.min(), keep.max() - c))
    return k[c - r:c + r + 1]


def _nps_amplitude(kernel: str, ny: int, nx: int, pixel_mm: float) -> np.ndarray:
    fy = sfft.fftfreq(ny, d=pixel_mm)[:, None]
    fx = sfft.rfftfreq(nx, d=pixel_mm)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    m = mtf_1d(kernel, ny, pixel_mm)[:, None] * np.exp(-np.log(2.0) * (fx / F50[kernel]) ** 2)
    nps = (f + 0.02) * m * m  # ramp x apodisation^2; a small floor keeps some low-frequency noise
    return np.sqrt(nps).astype(np.float32)


def _unit_noise_scale(amp: np.ndarray, ny: int, nx: int, rng: np.random.Generator) -> float:
    """Factor that gives the filtered noise a pixel SD of 1 (measured on a few slices)."""
    c = np.empty((8, *amp.shape), np.complex64)
    v = c.view(np.float32)
    v[...] = rng.random(v.shape, dtype=np.float32)
    v -= 0.5
    c *= amp
    sd = float(sfft.irfft2(c, s=(ny, nx), workers=-1).std())
    return 1.0 / sd


def kernel_spectrum(obj: np.ndarray, kernel: str, pixel_mm: float, workers: int = -1, chunk: int = 32) -> np.ndarray:
    """In-plane spectrum of the object filtered by the kernel's MTF (``obj`` is used up)."""
    nz, ny, nx = obj.shape
    my = mtf_1d(kernel, ny, pixel_mm).astype(np.float32)[:, None]
    mx = np.exp(-np.log(2.0) * (sfft.rfftfreq(nx, d=pixel_mm) / F50[kernel]) ** 2).astype(np.float32)[None, :]
    mtf = my * mx
    spec = np.empty((nz, ny, nx // 2 + 1), np.complex64)
    for k in range(0, nz, chunk):  # in slabs (the same numbers as one rfft2): each slab filtered while in cache
        a = obj[k:k + chunk]
        a += 1000.0  # air = 0, so the periodic FFT sees no step at the image border
        s = sfft.rfft2(a, workers=workers, overwrite_x=True)
        s *= mtf
        spec[k:k + chunk] = s
    return spec


def to_image(spec: np.ndarray, shape_yx: tuple[int, int], workers: int = -1, overwrite: bool = False,
             rows: slice | None = None, hu_range: tuple[float, float] | None = None, chunk: int = 32) -> np.ndarray:
    """HU image of a (filtered) spectrum: float32, or int16 (rounded, clipped) with ``hu_range``.

    In slabs of ``chunk`` slices. When both sizes are powers of two (every preset) the inverse
    2D FFT is taken as two 1D passes (along y, then back to real along x): the same numbers as
    ``irfft2`` (its 1/n scalings are then exact wherever applied), faster, and ``rows`` (a slice
    of image rows) skips the x pass where the image is not needed. ``overwrite`` lets it reuse ``spec``.
    """
    ny, nx = shape_yx
    r = rows if rows is not None else slice(0, ny)
    two_pass = ny & (ny - 1) == 0 and nx & (nx - 1) == 0
    out = np.empty((spec.shape[0], len(range(ny)[r]), nx), np.int16 if hu_range else np.float32)
    for k in range(0, spec.shape[0], chunk):
        if two_pass:
            col = sfft.ifft(spec[k:k + chunk], n=ny, axis=1, workers=workers, overwrite_x=overwrite)
            img = sfft.irfft(col[:, r], n=nx, axis=2, workers=workers, overwrite_x=True)
        else:
            img = sfft.irfft2(spec[k:k + chunk], s=shape_yx, workers=workers, overwrite_x=overwrite)[:, r]
        img = img.astype(np.float32, copy=False)
        img -= 1000.0
        if hu_range:
            np.clip(np.rint(img, out=img), hu_range[0], hu_range[1], out=img)
        out[k:k + chunk] = img
    return out


def add_noise(spec: np.ndarray, kernel: str, pixel_mm: float, shape_yx: tuple[int, int], noise_sd: np.ndarray,
              overlap: float, rng: np.random.Generator) -> None:
    """Add correlated noise (NPS ~ f MTF^2, per-slice pixel SD ``noise_sd``) to the spectrum in place.

    ``overlap`` in [0, 1) is how much adjacent slices share (1 - spacing / thickness, clipped).
    """
    ny, nx = shape_yx
    amp = _nps_amplitude(kernel, ny, nx, pixel_mm)
    unit = _unit_noise_scale(amp, ny, nx, rng)
    rho = float(np.clip(overlap, 0.0, 0.9))
    noise = np.empty(spec.shape[1:], np.complex64)
    prev = None
    for k in range(spec.shape[0]):
        if noise_sd[k] <= 0:
            continue
        v = noise.view(np.float32)
        v[...] = rng.random(v.shape, dtype=np.float32)
        v -= 0.5
        cur = noise.copy() if rho > 0 else noise
        mix = cur if prev is None or rho == 0 else (cur + rho * prev) / np.float32(np.sqrt(1 + rho * rho))
        spec[k] += mix * amp * np.float32(unit * noise_sd[k])
        prev = cur if rho > 0 else None


def blur_box(arr: np.ndarray, kernel: str, n_yx: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """The in-plane kernel blur of a box of the object (float32, same shape), as the FFT would do it.

    The box must carry a margin of the kernel radius; values near its edge are approximate.
    """
    from scipy import ndimage

    ky = psf_1d(kernel, n_yx[0], pixel_mm)
    kx = psf_1d(kernel, n_yx[1], pixel_mm)
    out = ndimage.correlate1d(arr.astype(np.float32), ky.astype(np.float32), axis=1, mode="nearest")
    return ndimage.correlate1d(out, kx.astype(np.float32), axis=2, mode="nearest")


def nonzero_box(arr: np.ndarray, pad_yx: tuple[int, int] = (0, 0)):
    """Index box of the nonzero voxels of ``arr`` (padded in y and x, clipped to the array), or None."""
    zs = np.flatnonzero(arr.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    ys = np.flatnonzero(arr[zs[0]:zs[-1] + 1].any(axis=(0, 2)))
    xs = np.flatnonzero(arr[zs[0]:zs[-1] + 1, ys[0]:ys[-1] + 1].any(axis=(0, 1)))
    (py, px), (_, ny, nx) = pad_yx, arr.shape
    return (slice(int(zs[0]), int(zs[-1]) + 1), slice(max(int(ys[0]) - py, 0), min(int(ys[-1]) + 1 + py, ny)),
            slice(max(int(xs[0]) - px, 0), min(int(xs[-1]) + 1 + px, nx)))


def blur_reach(kernel: str, n_yx: tuple[int, int], pixel_mm: float) -> tuple[int, int]:
    """How far (pixels, y and x) :func:`blur_box` carries a nonzero value, plus one."""
    return tuple(len(psf_1d(kernel, n, pixel_mm)) // 2 + 1 for n in n_yx)  # type: ignore[return-value]


def blur_nonzero(arr: np.ndarray, kernel: str, n_yx: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """:func:`blur_box` of ``arr``, computed only round its nonzero voxels (the same numbers).

    The blur is in-plane and its result is exactly 0 farther than the kernel's reach from any
    nonzero voxel; within the cropped box the border values are 0 (or the array's own border),
    so "nearest" extension sees what it saw on the whole array.
    """
    out = np.zeros(arr.shape, np.float32)
    box = nonzero_box(arr, blur_reach(kernel, n_yx, pixel_mm))
    if box is not None:
        out[box] = blur_box(arr[box], kernel, n_yx, pixel_mm)
    return out


def noise_per_slice(obj: np.ndarray, pixel_mm: float, sd: float, ref_slice: int) -> np.ndarray:
    """Pixel noise SD per slice: larger where the body is wider (diameter of its soft-tissue area).

    Tube-current modulation compensates most of it; the residual grows as exp(0.3 x mu x dD/2).
    """
    area = np.count_nonzero(obj > -500.0, axis=(1, 2)) * (pixel_mm**2)
    wed = 2.0 * np.sqrt(area / np.pi)
    mu = 0.0195  # /mm, water at ~70 keV
    return (sd * np.exp(0.3 * mu * (wed - wed[ref_slice]) / 2.0)).astype(np.float32)
