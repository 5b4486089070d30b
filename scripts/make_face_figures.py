"""Rebuild the README's face-protection figures from the quick start's own example.

Restores examples/old_photo.jpg twice with the default fast engine, as the quick start does: once with
`--faces none` (faces left to the engine: what the quick start gave before face protection) and once with
the defaults (faces protected), then writes two small JPEGs under docs/:
  faces_before_after.jpg  the whole picture, engine's faces | protected faces (384 px each)
  faces_crop.jpg          the face at 2x the output's pixels: Lanczos | engine's face | protected face
Run: python scripts/make_face_figures.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import studio
from studio.ops.resize import resize

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "old_photo.jpg"
DOCS = ROOT / "docs"
FACE_BOX = (250, 70, 430, 250)
"""The face in the 768x768 output (left, top, right, bottom): the detector's box with a margin."""


def labelled(image: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 7 * len(text), 18), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return image


def side_by_side(images: list[Image.Image]) -> Image.Image:
    sheet = Image.new("RGB", (sum(image.width for image in images), images[0].height), "white")
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width
    return sheet


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        engine_faces, protected = Path(folder) / "engine_faces.png", Path(folder) / "protected.png"
        studio.restore([EXAMPLE], engine_faces, engine="fast", faces="none")
        studio.restore([EXAMPLE], protected, engine="fast")
        before, after = (Image.open(path).convert("RGB") for path in (engine_faces, protected))
    source = np.asarray(Image.open(EXAMPLE).convert("RGB"), np.float32) / 255.0
    lanczos = Image.fromarray(np.rint(resize(source, 768, 768, "lanczos") * 255).astype(np.uint8))

    halves = [
        labelled(image.resize((384, 384), Image.Resampling.LANCZOS), text)
        for image, text in ((before, "--faces none (engine's face)"), (after, "default (face protected)"))
    ]
    side_by_side(halves).save(DOCS / "faces_before_after.jpg", quality=85, optimize=True)
    size = 2 * (FACE_BOX[2] - FACE_BOX[0])
    crops = [
        labelled(image.crop(FACE_BOX).resize((size, size), Image.Resampling.NEAREST), text)
        for image, text in ((lanczos, "Lanczos"), (before, "engine's face"), (after, "protected"))
    ]
    side_by_side(crops).save(DOCS / "faces_crop.jpg", quality=85, optimize=True)
    for name in ("faces_before_after.jpg", "faces_crop.jpg"):
        print(f"wrote {DOCS / name} ({(DOCS / name).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
