"""Colour fixes: pull a restored image's colours back to the source's after super-resolution.

Diffusion and GAN upscalers drift in colour (tone shifts, casts) while inventing detail. Each fix
takes the restored `result` and a `reference` (the source, already resized to the result's size)
and returns the result with the reference's colour. All take float32 (H, W, C) arrays in [0, 1]
with any channel count and return the same shape, float32, clipped to [0, 1].

- wavelet: StableSR's a-trous split: low frequencies from the reference, high from the result.
- wavelet-dwt: the same split with a decimated wavelet transform (PyWavelets).
- adain: per-channel mean and standard deviation matched (AdaIN, as in StableSR).
- histogram: per-channel histogram matching.
- lab: Reinhard et al. 2001 colour transfer (mean/std per channel), done in CIELAB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ColorFix = Callable[[np.ndarray, np.ndarray], np.ndarray]

_EPS = 1e-6
_HIST_BINS = 4096


def _checked(result: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float32 (H, W, C) of one shape; a mismatch is a caller bug, so ValueError."""
    result = np.asarray(result, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if result.ndim != 3 or result.shape != reference.shape:
        raise ValueError(
            f"colour fix needs two (H, W, C) arrays of one shape; got {result.shape} and {reference.shape}"
        )
    return result, reference


def _blur_axis(image: np.ndarray, axis: int, dilation: int) -> np.ndarray:
    """[1, 2, 1] / 4 along one axis with taps `dilation` apart and edge-replicating borders.

    Built from shifted slices instead of a padded copy: out[i] = x[i-d] + 2 x[i] + x[i+d], with
    indices clamped to the edge (which is what replicate padding means, for any d).
    """
    x = np.moveaxis(image, axis, 0)
    out = x * np.float32(0.5)
    d = dilation
    out[d:] += x[:-d] * np.float32(0.25)
    out[:d] += x[:1] * np.float32(0.25)
    out[:-d] += x[d:] * np.float32(0.25)
    out[-d:] += x[-1:] * np.float32(0.25)
    return np.moveaxis(out, 0, axis)


def atrous_lowpass(image: np.ndarray, levels: int = 5) -> np.ndarray:
    """The low-frequency residual of an a-trous wavelet decomposition with `levels` levels.

    Level i blurs the previous level's low band with the 3x3 kernel [1,2,1]x[1,2,1]/16 dilated
    by 2**i (1, 2, 4, ...); the high bands are the differences, so image = sum(high) + low.
    """
    low = np.asarray(image, dtype=np.float32)
    for level in range(levels):
        dilation = 2**level
        low = _blur_axis(_blur_axis(low, 0, dilation), 1, dilation)
    return low


def wavelet_fix(result: np.ndarray, reference: np.ndarray, levels: int = 5) -> np.ndarray:
    """StableSR's wavelet colour fix: high bands of the result plus the low band of the reference.

    The decomposition is linear, so high(result) + low(reference) = result - low(result - reference):
    one decomposition of the difference instead of two.
    """
    result, reference = _checked(result, reference)
    if levels < 1:
        raise ValueError(f"wavelet fix levels must be at least 1, got {levels}")
    fixed = result - atrous_lowpass(result - reference, levels)
    return np.clip(fixed, 0.0, 1.0, out=fixed)


def wavelet_fix_dwt(result: np.ndarray, reference: np.ndarray, levels: int = 5, wavelet: str = "bior4.4") -> np.ndarray:
    """Approximation band from the reference, detail bands from the result, with PyWavelets' DWT.

    A smooth biorthogonal wavelet (CDF 9/7, the one JPEG 2000 uses) keeps the swapped low band free
    of the blocks Haar would leave. `levels` is capped at what the image size allows; an image too
    small for even one level takes the reference as it is.
    """
    import pywt

    result, reference = _checked(result, reference)
    if levels < 1:
        raise ValueError(f"wavelet fix levels must be at least 1, got {levels}")
    height, width = result.shape[:2]
    levels = min(levels, pywt.dwt_max_level(min(height, width), pywt.Wavelet(wavelet).dec_len))
    if levels == 0:
        return reference.copy()
    coeffs = pywt.wavedec2(reference - result, wavelet, mode="symmetric", level=levels, axes=(0, 1))
    details = [tuple(np.zeros_like(band) for band in bands) for bands in coeffs[1:]]
    low = pywt.waverec2([coeffs[0], *details], wavelet, mode="symmetric", axes=(0, 1))
    fixed = (result + low[:height, :width]).astype(np.float32)
    return np.clip(fixed, 0.0, 1.0, out=fixed)


def _moments(image: np.ndarray) -> np.ndarray:
    """(C, 2) per-channel mean and standard deviation, accumulated in float64."""
    planes = np.moveaxis(image, -1, 0)
    return np.array([[plane.mean(dtype=np.float64), plane.std(dtype=np.float64)] for plane in planes])


def _match_moments(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Scale and shift each channel of `source` to the (mean, std) pairs in `target` (C, 2)."""
    current = _moments(source)
    gain = target[:, 1] / np.maximum(current[:, 1], _EPS)
    offset = target[:, 0] - current[:, 0] * gain
    return source * gain.astype(np.float32) + offset.astype(np.float32)


def adain_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """AdaIN: each channel of the result gets the reference's mean and standard deviation."""
    result, reference = _checked(result, reference)
    fixed = _match_moments(result, _moments(reference))
    return np.clip(fixed, 0.0, 1.0, out=fixed)


def _match_channel(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map `source` values so that their distribution follows `reference`'s.

    Both cumulative histograms are taken on 4096 fine bins and the mapping is interpolated
    linearly between bin edges: O(n) work where exact sorting (skimage) is O(n log n) and several
    times slower on 4K images, for differences far below one 8-bit level.
    """
    edges = np.linspace(0.0, 1.0, _HIST_BINS + 1)

    def cdf(values: np.ndarray) -> np.ndarray:
        index = np.minimum((values * _HIST_BINS).astype(np.int64), _HIST_BINS - 1)
        counts = np.bincount(index.ravel(), minlength=_HIST_BINS)
        return np.concatenate([[0.0], np.cumsum(counts) / values.size])

    source = np.clip(source, 0.0, 1.0)
    ref_cdf = cdf(np.clip(reference, 0.0, 1.0))
    # Empty reference bins make flat CDF stretches; a tiny ramp keeps the inverse well defined.
    ref_cdf = ref_cdf + np.arange(ref_cdf.size) * 1e-12
    mapped_edges = np.interp(cdf(source), ref_cdf, edges)
    return np.interp(source, edges, mapped_edges).astype(np.float32)


def histogram_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching: the strongest global fix, also corrects non-linear tone shifts."""
    result, reference = _checked(result, reference)
    fixed = np.empty_like(result)
    for channel in range(result.shape[-1]):
        fixed[..., channel] = _match_channel(result[..., channel], reference[..., channel])
    return fixed


def lab_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: match mean and std of L*, a*, b* (CIELAB, D65) to the reference.

    Lab separates lightness from colour, so a cast is corrected without the cross-channel shifts
    that matching R, G and B independently causes. The first three channels are taken as sRGB;
    further channels, and images with fewer than three, have no colour space to move into and get
    the same mean/std transfer per channel (what Reinhard's method reduces to for one channel).
    """
    from skimage.color import lab2rgb, rgb2lab

    result, reference = _checked(result, reference)
    if result.shape[-1] < 3:
        return adain_fix(result, reference)
    fixed = np.empty_like(result)
    rgb_result = np.clip(result[..., :3], 0.0, 1.0)
    rgb_reference = np.clip(reference[..., :3], 0.0, 1.0)
    lab = _match_moments(rgb2lab(rgb_result), _moments(rgb2lab(rgb_reference)))
    fixed[..., :3] = lab2rgb(lab)
    if result.shape[-1] > 3:
        fixed[..., 3:] = _match_moments(result[..., 3:], _moments(reference[..., 3:]))
    return np.clip(fixed, 0.0, 1.0, out=fixed)


def no_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The result unchanged (a float32 copy), for `--color-fix none`."""
    result, _ = _checked(result, reference)
    return result.copy()


COLOR_FIXES: dict[str, ColorFix] = {
    "none": no_fix,
    "wavelet": wavelet_fix,
    "wavelet-dwt": wavelet_fix_dwt,
    "adain": adain_fix,
    "histogram": histogram_fix,
    "lab": lab_fix,
}


def apply_color_fix(name: str, result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Run the colour fix called `name` (a key of COLOR_FIXES) with its default parameters."""
    try:
        fix = COLOR_FIXES[name]
    except KeyError:
        raise ValueError(f"unknown colour fix {name!r}; expected one of {', '.join(COLOR_FIXES)}") from None
    return fix(result, reference)
