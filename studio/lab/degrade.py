"""`studio degrade`: clean images in, aligned (clean, low-quality) test pairs out.

Layout: `pairs/hq/NAME.png` (the clean image, cropped so its sides divide by the scale),
`pairs/lq/NAME.png` (the degraded one, `scale` times smaller) and `pairs/degradations.json` with every
parameter drawn. Each image's randomness comes from (seed, its name), so a pair does not change when
other files join the folder, and the same seed gives the same pairs.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import InputError, StudioError, UsageError
from studio.io import MIN_SIDE, image_files, read_image, write_png_text, write_text_atomic
from studio.lab.degradation_profiles import PROFILES
from studio.settings import DEFAULT_MAX_PIXELS
from studio.version import __version__

METADATA_KEY = "studio-degradation"  # PNG text entry of each low-quality image
MANIFEST = "degradations.json"


@dataclass
class PairResult:
    name: str
    status: str  # ok | failed
    error: str | None = None
    record: dict[str, Any] | None = None


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator for one image: depends only on the seed and the image's name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop right and bottom so both sides divide by `scale`."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def degrade_image(
    image: np.ndarray, profile: str, scale: int, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(clean crop, low-quality image, steps) for one float32 RGB image."""
    clean = crop_to_multiple(image, scale)
    if min(clean.shape[:2]) < MIN_SIDE * scale:
        raise InputError(
            f"{name}: {image.shape[1]}x{image.shape[0]} is too small for --scale {scale} "
            f"(needs at least {MIN_SIDE * scale} px per side)"
        )
    low, steps = PROFILES[profile](clean, scale, image_rng(seed, name))
    return clean, low, steps


def check_options(profile: str, scale: int, seed: int) -> None:
    if profile not in PROFILES:
        raise UsageError(f"--profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if not 1 <= scale <= 8:
        raise UsageError(f"--scale {scale}: expected a whole factor from 1 to 8")
    if seed < 0:
        raise UsageError(f"--seed {seed}: expected a whole number from 0")


def collect_clean(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(pair name, file) for every input image; names are paths relative to their folder, without suffix."""
    found: list[tuple[str, Path]] = []
    for path in inputs:
        if path.is_dir():
            found += [(file.relative_to(path).with_suffix("").as_posix(), file) for file in image_files(path)]
        elif path.is_file():
            found.append((path.stem, path))
        else:
            raise UsageError(f"{path}: no such file or folder")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"several inputs would make the pair {duplicates[0]!r}; rename one")
    if not found:
        raise UsageError("no supported images among the inputs")
    return found


def make_pairs(
    inputs: list[Path], output: Path, profile: str, scale: int, seed: int, overwrite: bool
) -> list[PairResult]:
    """Degrade every input into `output`; a bad file fails alone, the manifest lists the pairs made."""
    check_options(profile, scale, seed)
    manifest_path = output / MANIFEST
    if manifest_path.exists() and not overwrite:
        raise UsageError(f"{manifest_path} exists; pass --overwrite to remake these pairs or choose another -o")
    results: list[PairResult] = []
    for name, source in collect_clean(inputs):
        try:
            picture = read_image(source, DEFAULT_MAX_PIXELS)
            clean, low, steps = degrade_image(picture.rgb, profile, scale, seed, name)
            record = {
                "source": str(source),
                "profile": profile,
                "scale": scale,
                "seed": seed,
                "hq_size": [clean.shape[1], clean.shape[0]],
                "lq_size": [low.shape[1], low.shape[0]],
                "steps": steps,
            }
            write_png_text(output / "hq" / f"{name}.png", clean, {"studio-source": str(source)})
            write_png_text(output / "lq" / f"{name}.png", low, {METADATA_KEY: json.dumps(record)})
            results.append(PairResult(name, "ok", record=record))
        except StudioError as exc:
            results.append(PairResult(name, "failed", error=str(exc)))
    manifest = {
        "studio_version": __version__,
        "profile": profile,
        "scale": scale,
        "seed": seed,
        "pairs": {r.name: r.record for r in results if r.record is not None},
        "failed": {r.name: r.error for r in results if r.error is not None},
    }
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2))
    return results
