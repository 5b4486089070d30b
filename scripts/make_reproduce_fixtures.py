"""Write tests/fixtures/reproduce/: small inputs, outputs of `studio restore` with their provenance, and
the cases' commands. The reproduction test reruns each output's recorded command on the current code and
expects the same pixels, so code moves that must not change behaviour are checked against a build from
before them.

    python scripts/make_reproduce_fixtures.py

Run it only when a change is meant to alter pixels (and say so in the commit).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from studio.testing.tiny_sd import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_components, save_as_diffusers_folder

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests" / "fixtures" / "reproduce"
TINY_SD_X4 = "tiny-sd-x4"
"""Name of the folder of the tiny random SD x4 model (seed 0) that the sd-x4 case reads; rebuilt by the test."""
CASES: dict[str, list[str]] = {
    "classical_rgba.png": ["in_rgba.png", "--engine", "classical", "--scale", "3"],
    "fast.png": ["in.png", "--engine", "fast"],
    "fast_fidelity_16bit.png": [
        "in16.png",
        "--engine",
        "fast",
        "--scale",
        "2",
        "--fidelity",
        "0.3",
        "--color-fix",
        "wavelet",
    ],
    "sd_x4.png": [
        "in.png",
        "--engine",
        "sd-x4",
        "--model",
        TINY_SD_X4,
        "--steps",
        "2",
        "--seed",
        "5",
        "--preset",
        "old-photo",
        "--prompt",
        "a woman",
    ],
}


def write_inputs(folder: Path) -> None:
    photo = Image.open(ROOT / "examples" / "old_photo.jpg").convert("RGB")
    crop = photo.crop((100, 60, 148, 100))  # 48x40, the face's edge: texture and skin
    crop.save(folder / "in.png")
    rgba = crop.copy()
    ramp = np.tile(np.linspace(40, 255, 48, dtype=np.uint8), (40, 1))
    rgba.putalpha(Image.fromarray(ramp))
    rgba.save(folder / "in_rgba.png")
    sixteen = np.asarray(crop, dtype=np.uint16) * 257 + np.arange(40 * 48 * 3, dtype=np.uint16).reshape(40, 48, 3) % 200
    cv2.imwrite(str(folder / "in16.png"), sixteen[..., ::-1])


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work)
        save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), work / TINY_SD_X4)
        for output, args in CASES.items():
            subprocess.run(["studio", "restore", *args, "-o", output], cwd=work, check=True)
            shutil.copy(work / output, TARGET / output)
        for name in ("in.png", "in_rgba.png", "in16.png"):
            shutil.copy(work / name, TARGET / name)
    (TARGET / "cases.json").write_text(json.dumps(CASES, indent=2) + "\n")


if __name__ == "__main__":
    main()
