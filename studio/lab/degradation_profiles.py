"""Degradation profiles: a clean image in, its low-quality version and every parameter drawn out.

Each profile is `profile(image, scale, rng) -> (low_quality, steps)`: `image` float32 RGB in [0, 1]
whose sides divide by `scale`, the result exactly `scale` times smaller, and `steps` a JSON-ready list
naming each operation with its drawn values, so a pair can be explained and reproduced.

- realesrgan: the second-order model of Real-ESRGAN with the ranges of its published training config
  (options/train_realesrgan_x4plus.yml). Real-ESRGAN sharpens the clean image before degrading it (a
  training choice for crisper outputs); evaluation pairs degrade the clean image itself.
- old-photo: a faded print: soft optics, fading, sepia or a colour cast, paper texture, film grain,
  dust and scratches, JPEG. The ranges are studio's own, chosen to look like family-album scans.
- scan: a decent flatbed scan of a print: mild blur, paper tint, sensor noise, a little dust, JPEG.
- jpeg: bicubic downscale and heavy JPEG compression, the classic web-image damage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from studio.ops.degradations import (
    RESIZE_MODES,
    add_gaussian_noise,
    add_poisson_noise,
    clip_quantize,
    filter_image,
    gaussian_kernel,
    jpeg,
    pad_kernel,
    plateau_kernel,
    resize_to,
    sinc_kernel,
)

Steps = list[dict[str, Any]]
Profile = Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, Steps]]

# Real-ESRGAN's published ranges (train_realesrgan_x4plus.yml and its RealESRGANDataset)
KERNEL_SIZES = tuple(range(7, 22, 2))
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
KERNEL_PAD = 21
FINAL_SINC_PROB = 0.8
FIRST_ORDER: dict[str, Any] = {
    "blur_prob": 1.0,
    "sinc_prob": 0.1,
    "blur_sigma": (0.2, 3.0),
    "betag": (0.5, 4.0),
    "betap": (1.0, 2.0),
    "resize_prob": (0.2, 0.7, 0.1),
    "resize_range": (0.15, 1.5),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30, 95),
}
SECOND_ORDER: dict[str, Any] = {
    "blur_prob": 0.8,
    "sinc_prob": 0.1,
    "blur_sigma": (0.2, 1.5),
    "betag": (0.5, 4.0),
    "betap": (1.0, 2.0),
    "resize_prob": (0.3, 0.4, 0.3),
    "resize_range": (0.3, 1.2),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 25.0),
    "poisson_scale_range": (0.05, 2.5),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30, 95),
}


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


# ------------------------------------------------------------------------------------------ Real-ESRGAN


def draw_kernel(rng: np.random.Generator, order: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """One blur kernel from Real-ESRGAN's mixture: sinc with `sinc_prob`, else one of six Gaussian-like shapes."""
    size = int(rng.choice(KERNEL_SIZES))
    if rng.random() < order["sinc_prob"]:
        cutoff = _uniform(rng, (math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi))
        return pad_kernel(sinc_kernel(size, cutoff), KERNEL_PAD), {"kernel": "sinc", "size": size, "cutoff": cutoff}
    kind = str(rng.choice(KERNEL_TYPES, p=KERNEL_PROBS))
    sigma_x = _uniform(rng, order["blur_sigma"])
    if kind.endswith("aniso"):
        sigma_y, angle = _uniform(rng, order["blur_sigma"]), _uniform(rng, (-math.pi, math.pi))
    else:
        sigma_y, angle = sigma_x, 0.0
    if kind.startswith("generalized"):
        # half of the draws below 1 (heavy tails), half above (flatter top), as Real-ESRGAN does
        beta = (
            _uniform(rng, (order["betag"][0], 1.0)) if rng.random() < 0.5 else _uniform(rng, (1.0, order["betag"][1]))
        )
    elif kind.startswith("plateau"):
        beta = _uniform(rng, order["betap"])
    else:
        beta = 1.0
    make = plateau_kernel if kind.startswith("plateau") else gaussian_kernel
    params = {"kernel": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "angle": angle, "beta": beta}
    return pad_kernel(make(size, sigma_x, sigma_y, angle, beta), KERNEL_PAD), params


def noise_step(image: np.ndarray, rng: np.random.Generator, order: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Gaussian (sigma in noise_range, on the 0-255 scale) or Poisson noise (scaled by poisson_scale_range),
    gray or colour."""
    gray = bool(rng.random() < order["gray_noise_prob"])
    if rng.random() < order["gaussian_noise_prob"]:
        sigma = _uniform(rng, order["noise_range"])
        return add_gaussian_noise(image, sigma / 255.0, gray, rng), {
            "op": "gaussian_noise",
            "sigma_255": sigma,
            "gray": gray,
        }
    scale = _uniform(rng, order["poisson_scale_range"])
    return add_poisson_noise(image, scale, gray, rng), {"op": "poisson_noise", "scale": scale, "gray": gray}


def _jpeg_step(
    image: np.ndarray, rng: np.random.Generator, bounds: tuple[int, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    quality = int(rng.integers(bounds[0], bounds[1] + 1))
    return jpeg(np.clip(image, 0.0, 1.0), quality), {"op": "jpeg", "quality": quality}


def _random_resize(
    image: np.ndarray, rng: np.random.Generator, order: dict[str, Any], base: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Up, down or keep (by `resize_prob`), by a factor drawn from `resize_range`, relative to `base` (h, w)."""
    direction = str(rng.choice(("up", "down", "keep"), p=order["resize_prob"]))
    low, high = order["resize_range"]
    factor = {"up": _uniform(rng, (1.0, high)), "down": _uniform(rng, (low, 1.0)), "keep": 1.0}[direction]
    mode = str(rng.choice(RESIZE_MODES))
    height, width = int(base[0] * factor), int(base[1] * factor)
    return resize_to(image, height, width, mode), {
        "op": "resize",
        "direction": direction,
        "factor": factor,
        "mode": mode,
        "size": [width, height],
    }


def _degradation_round(
    image: np.ndarray, rng: np.random.Generator, order: dict[str, Any], base: tuple[float, float], steps: Steps
) -> np.ndarray:
    """Blur, resize, noise: the part both rounds share."""
    if rng.random() < order["blur_prob"]:
        kernel, params = draw_kernel(rng, order)
        image = filter_image(image, kernel)
        steps.append({"op": "blur", **params})
    image, params = _random_resize(image, rng, order, base)
    steps.append(params)
    image, params = noise_step(image, rng, order)
    steps.append(params)
    return np.clip(image, 0.0, 1.0)


def _final_resize_and_sinc(
    image: np.ndarray, rng: np.random.Generator, target: tuple[int, int], steps: Steps
) -> np.ndarray:
    mode = str(rng.choice(RESIZE_MODES))
    image = resize_to(image, target[0], target[1], mode)
    steps.append({"op": "resize", "direction": "final", "mode": mode, "size": [target[1], target[0]]})
    if rng.random() < FINAL_SINC_PROB:
        size = int(rng.choice(KERNEL_SIZES))
        cutoff = _uniform(rng, (math.pi / 3, math.pi))
        image = filter_image(image, pad_kernel(sinc_kernel(size, cutoff), KERNEL_PAD))
        steps.append({"op": "blur", "kernel": "sinc", "size": size, "cutoff": cutoff})
    return image


def realesrgan(image: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, Steps]:
    """Real-ESRGAN's second-order degradation: two rounds of blur/resize/noise/JPEG, then sinc filtering."""
    height, width = image.shape[:2]
    target = (height // scale, width // scale)
    steps: Steps = []
    out = _degradation_round(image, rng, FIRST_ORDER, (height, width), steps)
    out, params = _jpeg_step(out, rng, FIRST_ORDER["jpeg_range"])
    steps.append(params)
    out = _degradation_round(out, rng, SECOND_ORDER, target, steps)
    # the last resize (with sinc) and the JPEG come in a random order, as in Real-ESRGAN
    if rng.random() < 0.5:
        out = _final_resize_and_sinc(out, rng, target, steps)
        out, params = _jpeg_step(out, rng, SECOND_ORDER["jpeg_range"])
        steps.append(params)
    else:
        out, params = _jpeg_step(out, rng, SECOND_ORDER["jpeg_range"])
        steps.append(params)
        out = _final_resize_and_sinc(out, rng, target, steps)
    return clip_quantize(out), steps


# ------------------------------------------------------------------------------------------ prints and scans

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)


def _soft_downscale(
    image: np.ndarray, scale: int, sigma_range: tuple[float, float], rng: np.random.Generator, steps: Steps
) -> np.ndarray:
    """Optical softness at full size, then an area downscale to the low-quality size."""
    import cv2

    sigma = _uniform(rng, sigma_range)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    height, width = image.shape[0] // scale, image.shape[1] // scale
    steps.append({"op": "blur", "kernel": "iso", "sigma_x": sigma, "sigma_y": sigma})
    steps.append({"op": "resize", "direction": "final", "mode": "area", "size": [width, height]})
    return resize_to(image, height, width, "area")


def _paper_texture(
    image: np.ndarray, rng: np.random.Generator, amplitude_range: tuple[float, float], steps: Steps
) -> np.ndarray:
    """Multiplicative low-frequency mottling, like the fibres and unevenness of photo paper."""
    import cv2

    amplitude = _uniform(rng, amplitude_range)
    grain = _uniform(rng, (1.5, 4.0))
    field = cv2.GaussianBlur(rng.normal(0.0, 1.0, image.shape[:2]).astype(np.float32), (0, 0), grain)
    field /= max(float(field.std()), 1e-6)
    steps.append({"op": "paper_texture", "amplitude": amplitude, "grain_px": grain})
    return image * (1.0 + amplitude * field)[..., None]


def _dust_and_scratches(
    image: np.ndarray, rng: np.random.Generator, density_range: tuple[float, float], max_scratches: int, steps: Steps
) -> np.ndarray:
    """Specks (dark or light, 1-3 px) and thin light scratches, mostly along the print's long side."""
    import cv2

    height, width = image.shape[:2]
    density = _uniform(rng, density_range)
    specks = int(rng.poisson(density * height * width))
    scratches = int(rng.integers(0, max_scratches + 1))
    mask = np.zeros((height, width), np.float32)  # +1 light, -1 dark
    for _ in range(specks):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(mask, centre, int(rng.integers(0, 2)), float(rng.choice((-1.0, 1.0))), -1)
    for _ in range(scratches):
        x = int(rng.integers(0, width))
        length = int(height * _uniform(rng, (0.2, 0.9)))
        top = int(rng.integers(0, max(1, height - length)))
        drift = int(rng.integers(-width // 20 - 1, width // 20 + 2))
        cv2.line(mask, (x, top), (x + drift, top + length), 1.0, 1, cv2.LINE_AA)
    steps.append({"op": "dust_and_scratches", "specks": specks, "scratches": scratches, "density": density})
    light = np.clip(mask, 0, 1)[..., None]
    dark = np.clip(-mask, 0, 1)[..., None]
    return image * (1 - light - dark) + light * 0.92 + dark * 0.08


def _grain_dust_jpeg(
    image: np.ndarray,
    rng: np.random.Generator,
    steps: Steps,
    grain: tuple[tuple[float, float], bool, str],
    dust: tuple[tuple[float, float], int],
    quality: tuple[int, int],
) -> np.ndarray:
    """The tail prints and scans share: grain or sensor noise (sigma range on 0-255, gray?, why), specks, JPEG."""
    bounds, gray, why = grain
    sigma = _uniform(rng, bounds)
    image = add_gaussian_noise(image, sigma / 255.0, gray, rng)
    steps.append({"op": "gaussian_noise", "sigma_255": sigma, "gray": gray, "why": why})
    image = _dust_and_scratches(np.clip(image, 0, 1), rng, dust[0], dust[1], steps)
    image, params = _jpeg_step(image, rng, quality)
    steps.append(params)
    return image


def old_photo(image: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, Steps]:
    """A faded family-album print: soft, faded, toned, textured, grainy, dusty, then JPEG."""
    steps: Steps = []
    out = _soft_downscale(image, scale, (0.5, 2.0), rng, steps)
    black, white = _uniform(rng, (0.04, 0.18)), _uniform(rng, (0.82, 0.97))
    out = black + (white - black) * out
    steps.append({"op": "fade", "black": black, "white": white})
    if rng.random() < 0.5:
        amount = _uniform(rng, (0.4, 1.0))
        out = (1 - amount) * out + amount * np.clip(out @ SEPIA.T, 0, 1)
        steps.append({"op": "sepia", "amount": amount})
    else:
        gains = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        gains /= gains.mean()
        out = out * gains
        steps.append({"op": "colour_cast", "gains": [float(g) for g in gains]})
    out = _paper_texture(out, rng, (0.01, 0.05), steps)
    out = _grain_dust_jpeg(
        out, rng, steps, grain=((2.0, 10.0), True, "film grain"), dust=((5e-5, 4e-4), 4), quality=(40, 90)
    )
    return clip_quantize(out), steps


def scan(image: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, Steps]:
    """A flatbed scan of a print: mild blur, paper tint, sensor noise, a few specks, JPEG."""
    steps: Steps = []
    out = _soft_downscale(image, scale, (0.3, 1.2), rng, steps)
    tint = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    lift = _uniform(rng, (0.0, 0.06))
    out = lift + (1 - lift) * out * tint
    steps.append({"op": "paper_tint", "gains": [float(g) for g in tint], "lift": lift})
    out = _grain_dust_jpeg(
        out, rng, steps, grain=((1.0, 6.0), False, "sensor noise"), dust=((1e-5, 8e-5), 0), quality=(70, 95)
    )
    return clip_quantize(out), steps


def jpeg_profile(image: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, Steps]:
    """Bicubic downscale, then JPEG at quality 10-50."""
    height, width = image.shape[0] // scale, image.shape[1] // scale
    out = resize_to(image, height, width, "bicubic")
    steps: Steps = [{"op": "resize", "direction": "final", "mode": "bicubic", "size": [width, height]}]
    out, params = _jpeg_step(np.clip(out, 0, 1), rng, (10, 50))
    steps.append(params)
    return clip_quantize(out), steps


PROFILES: dict[str, Profile] = {"realesrgan": realesrgan, "old-photo": old_photo, "scan": scan, "jpeg": jpeg_profile}
