"""Degradation primitives for making test pairs: blur kernels, resizing, noise, JPEG.

Pure array functions on float32 RGB in [0, 1]; randomness comes in as a numpy Generator. The kernel
shapes follow the Real-ESRGAN paper (Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data"): isotropic/anisotropic Gaussian, generalized Gaussian,
plateau-shaped and the 2D sinc (ideal low-pass) filter. OpenCV does the filtering, resizing and JPEG.
"""

from __future__ import annotations

import math

import numpy as np

RESIZE_MODES = ("area", "bilinear", "bicubic")


def _grid(size: int) -> np.ndarray:
    """(size, size, 2) pixel offsets from the kernel's centre."""
    half = (size - 1) / 2.0
    axis = np.arange(size, dtype=np.float64) - half
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx, yy], axis=-1)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """x^T Sigma^-1 x for the covariance with principal sigmas (sigma_x, sigma_y) rotated by `angle`."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    grid = _grid(size)
    return np.einsum("...i,ij,...j->...", grid, np.linalg.inv(covariance), grid)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float, beta: float = 1.0) -> np.ndarray:
    """Generalized Gaussian exp(-(x^T Sigma^-1 x / 2)^beta): beta 1 is the plain Gaussian, <1 heavier tails."""
    kernel = np.exp(-0.5 * np.power(_quadratic_form(size, sigma_x, sigma_y, angle), beta))
    return kernel / kernel.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, angle: float, beta: float) -> np.ndarray:
    """Plateau-shaped kernel 1 / (1 + (x^T Sigma^-1 x)^beta): flat top, fast fall-off (ringing-free blur)."""
    kernel = 1.0 / (np.power(_quadratic_form(size, sigma_x, sigma_y, angle), beta) + 1.0)
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """2D circular ideal low-pass filter with cutoff frequency `cutoff` (radians per pixel, up to pi).

    Convolving with it produces the ringing and overshoot artefacts that real resizers and JPEG leave.
    """
    from scipy.special import j1

    radius = np.linalg.norm(_grid(size), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * j1(cutoff * radius) / (2.0 * math.pi * radius)
    kernel[radius == 0] = cutoff**2 / (4.0 * math.pi)
    return kernel / kernel.sum()


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Centre a smaller odd kernel inside a size x size one (Real-ESRGAN pads every kernel to 21)."""
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, pad) if pad > 0 else kernel


def filter_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with `kernel`, reflecting at the borders."""
    import cv2

    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    return cv2.filter2D(image.astype(np.float32), -1, flipped, borderType=cv2.BORDER_REFLECT_101)


def resize_to(image: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize with OpenCV's area, bilinear or bicubic interpolation (the modes Real-ESRGAN draws from)."""
    import cv2

    flags = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    if mode not in flags:
        raise ValueError(f"resize mode {mode!r}: expected one of {', '.join(flags)}")
    height, width = max(1, int(height)), max(1, int(width))
    return cv2.resize(image.astype(np.float32), (width, height), interpolation=flags[mode])


def add_gaussian_noise(image: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation `sigma` (on the 0-1 scale); gray: the same in
    every channel."""
    shape = image.shape[:2] + (1,) if gray else image.shape
    return image + rng.normal(0.0, sigma, size=shape).astype(np.float32)


def add_poisson_noise(image: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: counts drawn around the 8-bit image's levels, the deviation multiplied by `scale`.

    As in Real-ESRGAN, the number of photon levels is the image's count of distinct values rounded up
    to a power of two; gray noise is drawn on the luma and added to every channel.
    """
    quantized = np.clip(np.round(image * 255.0), 0, 255) / 255.0
    source = quantized @ np.array([0.299, 0.587, 0.114])[:, None] if gray else quantized
    levels = 2 ** math.ceil(math.log2(max(2, len(np.unique(source)))))
    noise = rng.poisson(np.clip(source, 0, None) * levels) / levels - source
    return image + (noise * scale).astype(np.float32)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through OpenCV's JPEG encoder at `quality` (1-100)."""
    import cv2

    bgr = np.clip(np.round(image[..., ::-1] * 255.0), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed at quality {quality}")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def clip_quantize(image: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to 8-bit levels, as a saved image would be."""
    return (np.clip(np.round(image * 255.0), 0, 255) / 255.0).astype(np.float32)
