"""The per-region quality check on scikit-image's photos and documents: what each region measures, what is flagged.

Each image (scaled so its longer side is --size) is enlarged x4 by the fast engine (Real-ESRGAN x4plus, bundled
ncnn model on the CPU) with faces left to the engine, and by the same engine with faces protected; the
quality report (studio.runner.quality) gives PSNR/SSIM against the Lanczos upscale for the whole picture and
for faces, text and flat areas, and `departures` the warnings a run would print. Prints JSON; used to set
REGION_LIMITS.

    python benchmarks/bench_region_quality.py --size 160
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from skimage import data

from studio.engines.faces.detect import MobileNetDetector
from studio.engines.faces.protect import protect_faces
from studio.engines.fast.engine import FastEngine
from studio.ops.resize import resize
from studio.runner.quality import departures, quality_report
from studio.settings import Settings

IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "page", "text", "immunohistochemistry")


def load(name: str, size: int) -> np.ndarray:
    image = getattr(data, name)().astype(np.float32) / 255.0
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    factor = size / max(image.shape[:2])
    return resize(image, round(image.shape[0] * factor), round(image.shape[1] * factor), "area")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    engine = FastEngine(Settings(engine="fast", model="realesrgan-x4plus"))
    detector = MobileNetDetector()
    results = {}
    for name in IMAGES:
        source = load(name, args.size)
        result = engine.restore(source, 4.0).image
        faces = detector.detect(source)
        landmarks = [face.landmarks for face in faces]
        lanczos = resize(source, result.shape[0], result.shape[1], "lanczos")
        protected = protect_faces(result, lanczos, faces, source.shape[:2]).image
        rows = {}
        for variant, image in (("engine", result), ("protected", protected)):
            quality = quality_report(source, image, landmarks)
            rows[variant] = {
                "whole": [quality["psnr_vs_lanczos_db"], quality["ssim_vs_lanczos"]],
                "regions": quality["regions"],
                "warnings": departures(quality, faces_restored=False),
            }
        results[name] = {"input": list(source.shape[1::-1]), "faces": len(faces), **rows}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
