"""Rebuild examples/ from public-domain images that scikit-image ships.

old_photo.jpg: NASA's astronaut portrait (public domain), degraded the way old prints are: shrunk,
blurred, faded towards sepia, grainy, then saved as a low-quality JPEG.
Run: python scripts/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from skimage import data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def old_photo() -> Image.Image:
    image = Image.fromarray(data.astronaut()).resize((192, 192), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    sepia = np.stack([gray * 1.07, gray * 0.93, gray * 0.74], axis=-1)
    faded = 0.18 + 0.68 * (0.6 * sepia + 0.4 * pixels)
    grain = np.random.default_rng(1969).normal(0.0, 0.025, faded.shape[:2])[..., None]
    return Image.fromarray(np.clip((faded + grain) * 255.0, 0, 255).astype(np.uint8))


def main() -> None:
    EXAMPLES.mkdir(exist_ok=True)
    old_photo().save(EXAMPLES / "old_photo.jpg", quality=45)
    print(f"wrote {EXAMPLES / 'old_photo.jpg'}")


if __name__ == "__main__":
    main()
