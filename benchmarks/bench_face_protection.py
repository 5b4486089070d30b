"""Face protection on faces the tests do not tune to: how faithful the faces stay, and what the background keeps.

For each photo, a clean original (the truth) is degraded like an old print (shrunk, blurred, grain, JPEG
quality 45), enlarged by the fast engine (Real-ESRGAN x4plus, the bundled ncnn model on the CPU), and its
faces (found by the offline detector in the degraded input) are protected with each share of the engine's
detail in --details. Per variant, inside the face mask: SSIM against the Lanczos upscale and against the
truth (RGB channels averaged, Gaussian window); outside it: the background's sharpness (mean gradient magnitude,
relative to the engine's own output) and the largest pixel change. Prints JSON.

    python benchmarks/bench_face_protection.py --details 0,0.25,0.5,1

Photos: scikit-image's astronaut (512 -> 128 px input, x4) and cameraman (512 -> 256 px input, x2: the
fast engine's x4 pass and a Lanczos reduction), a 6x4 grid of Labeled Faces in the Wild crops (25 -> 50 px
by Lanczos, no truth beyond that; x4), and the quick start's own examples/old_photo.jpg (x4; its truth is the
astronaut faded with the example's own sepia formula, at the output size).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from studio.engines.faces.detect import MobileNetDetector
from studio.engines.faces.protect import face_mask
from studio.engines.fast.engine import FastEngine
from studio.io import read_image
from studio.ops.metrics import luma, masked_ssim
from studio.ops.resize import resize
from studio.settings import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "old_photo.jpg"


def old_print(clean: np.ndarray, factor: int, seed: int) -> np.ndarray:
    """Shrink by `factor`, blur, add grain, save as JPEG quality 45: the degradation of the example photo."""
    height, width = clean.shape[0] // factor, clean.shape[1] // factor
    small = cv2.GaussianBlur(resize(clean, height, width, "area"), (0, 0), 0.8)
    grain = np.random.default_rng(seed).normal(0.0, 0.025, small.shape[:2])[..., None]
    buffer = io.BytesIO()
    Image.fromarray(np.clip((small + grain) * 255 + 0.5, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=45)
    return np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255


def rgb(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def sepia_truth(size: int) -> np.ndarray:
    """The astronaut faded as scripts/make_examples.py fades it, without its blur, grain and JPEG."""
    clean = resize(rgb(data.astronaut()), size, size, "lanczos")
    gray = clean @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = np.stack([gray * 1.07, gray * 0.93, gray * 0.74], axis=-1)
    return np.clip(0.18 + 0.68 * (0.6 * sepia + 0.4 * clean), 0.0, 1.0)


def cases() -> list[tuple[str, np.ndarray, np.ndarray | None, float]]:
    """(name, degraded input, truth at the output size or None, scale)."""
    astronaut = rgb(data.astronaut())
    camera = rgb(data.camera())
    faces = data.lfw_subset()[:24]  # the first 100 are faces
    grid = np.vstack([np.hstack(list(faces[row * 6 : row * 6 + 6])) for row in range(4)])
    grid = resize(rgb(grid), grid.shape[0] * 2, grid.shape[1] * 2, "lanczos")
    example = read_image(EXAMPLE, 10**8).rgb
    return [
        ("astronaut", old_print(astronaut, 4, 1), astronaut, 4.0),
        ("cameraman", old_print(camera, 2, 2), camera, 2.0),
        ("lfw_grid", grid, None, 4.0),
        ("old_photo_example", example, sepia_truth(example.shape[0] * 4), 4.0),
    ]


def sharpness(image: np.ndarray, where: np.ndarray) -> float:
    """Mean gradient magnitude (Sobel, Y channel) over the pixels `where` is true."""
    y = luma(image).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    return float(magnitude[where].mean())


def measure(source: np.ndarray, truth: np.ndarray | None, scale: float, engine: FastEngine, details: list[float]):
    out_h, out_w = round(source.shape[0] * scale), round(source.shape[1] * scale)
    result = engine.restore(source, scale).image
    lanczos = resize(source, out_h, out_w, "lanczos")
    faces = MobileNetDetector().detect(source)
    mask = face_mask([face.landmarks for face in faces], source.shape[:2], (out_h, out_w))
    background = mask == 0
    rows = {"faces": len(faces), "face_pixels": int(np.count_nonzero(mask)), "variants": {}}
    for detail in details:
        image = result + (mask * (1.0 - detail))[..., None] * (lanczos - result)
        row = {
            "ssim_face_vs_lanczos": round(masked_ssim(image, lanczos, mask), 4),
            "background_sharpness_vs_engine": round(sharpness(image, background) / sharpness(result, background), 4),
            "background_max_change": float(np.abs(image - result)[background].max(initial=0.0)),
        }
        if truth is not None:
            row["ssim_face_vs_truth"] = round(masked_ssim(image, truth, mask), 4)
        rows["variants"][f"detail={detail:g}"] = row
    rows["lanczos_background_sharpness_vs_engine"] = round(
        sharpness(lanczos, background) / sharpness(result, background), 4
    )
    if truth is not None:
        rows["ssim_face_lanczos_vs_truth"] = round(masked_ssim(lanczos, truth, mask), 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", default="0,0.25,0.5,1", help="shares of the engine's detail kept in faces")
    args = parser.parse_args()
    details = [float(value) for value in args.details.split(",")]
    engine = FastEngine(Settings(engine="fast", model="realesrgan-x4plus"))
    results = {name: measure(source, truth, scale, engine, details) for name, source, truth, scale in cases()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
