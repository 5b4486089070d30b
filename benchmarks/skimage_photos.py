"""Write scikit-image's bundled photos (public domain / CC0) as clean PNGs, the input of the README's quality table.

    python benchmarks/skimage_photos.py clean/ --size 256
    studio degrade clean/ -o pairs/ --profile realesrgan --scale 4 --seed 1
    studio evaluate pairs/ --run engine=classical --run engine=fast --run engine=fast,faces=gfpgan

Each photo is centre-cropped to a square and resized to --size, so the evaluation stays small
enough for a shared CPU. Prints the written files as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def main() -> None:
    from PIL import Image
    from skimage import data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)())
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize(
            (args.size, args.size), Image.Resampling.LANCZOS
        )
        path = args.folder / f"{name}.png"
        square.save(path)
        written.append(str(path))
    print(json.dumps({"written": written, "size": args.size}, indent=2))


if __name__ == "__main__":
    main()
