"""Training pairs: random crops of the user's clean images, flipped and rotated, degraded on the fly.

Every batch is a function of (seed, step, micro-batch, process) alone, never of what came before, so a
resumed run sees exactly the batches an uninterrupted one would, and several processes see different ones.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from studio.errors import UsageError
from studio.io import read_image
from studio.lab.degradation_profiles import PROFILES
from studio.lab.degrade import collect_clean, degrade_image
from studio.lab.evaluate import find_pairs
from studio.settings import DEFAULT_MAX_PIXELS

GUIDE_MINIMUM, GUIDE_IDEAL = 500, 5000
"""Images the Real-ESRGAN fine-tuning guide asks for: at least 500, ideally 5000."""


@dataclass(frozen=True)
class Source:
    """One training image: a clean file, and its low-quality partner when pairs are given (`--lq`)."""

    name: str
    hq: Path
    lq: Path | None = None


@dataclass(frozen=True)
class Sample:
    """Aligned float32 (H, W, 3) crops: the low-quality input and the clean target `scale` times larger."""

    lq: np.ndarray
    hq: np.ndarray


def collect_sources(inputs: list[Path], lq_dir: Path | None) -> list[Source]:
    """The training images: clean files (degraded on the fly), or clean/low-quality pairs matched by name."""
    if lq_dir is None:
        return [Source(name, path) for name, path in collect_clean(inputs)]
    if len(inputs) != 1 or not inputs[0].is_dir():
        raise UsageError("--lq DIR pairs one clean folder with one low-quality folder; give one clean folder")
    return [Source(pair.name, pair.hq, pair.lq) for pair in find_pairs(None, inputs[0], lq_dir)]


def check_sources(sources: list[Source], gt_size: int, scale: int, minimum: int) -> None:
    """Refuse before training what would fail or disappoint later: too few images, images under the crop."""
    if len(sources) < minimum:
        raise UsageError(
            f"{len(sources)} training images; the fine-tuning guide asks for at least {GUIDE_MINIMUM} "
            f"(ideally {GUIDE_IDEAL}); add images, or pass --min-images {len(sources)} to train on these"
        )
    small = []
    for source in sources:
        with Image.open(source.hq) as image:  # the header only
            size = image.size
        if min(size) < gt_size:
            small.append((source, size))
        if source.lq is not None:
            with Image.open(source.lq) as low:
                if (low.width * scale, low.height * scale) != size:
                    raise UsageError(
                        f"{source.name}: the low-quality image is {low.width}x{low.height}, the clean one "
                        f"{size[0]}x{size[1]}; pairs must differ by the model's scale x{scale}"
                    )
    if small:
        first, (width, height) = small[0]
        raise UsageError(
            f"{len(small)} of {len(sources)} images are smaller than the {gt_size} px crop (first: {first.hq.name}, "
            f"{width}x{height}); remove them or pass a smaller --gt-size"
        )


def split_validation(sources: list[Source], fraction: float = 0.1) -> tuple[list[Source], list[Source]]:
    """(training, held-out) when no --val folder is given: every tenth image by a stable hash of its name."""
    ranked = sorted(sources, key=lambda s: zlib.crc32(s.name.encode("utf-8")))
    held = max(1, round(len(sources) * fraction))
    if len(sources) - held < 1:
        raise UsageError("one image cannot be both trained on and held out; add images or give --val DIR")
    held_names = {source.name for source in ranked[:held]}
    return [s for s in sources if s.name not in held_names], [s for s in sources if s.name in held_names]


def _rng(seed: int, *indices: int) -> np.random.Generator:
    return np.random.default_rng([seed, *indices])


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / transpose (the 8 symmetries of the square) on every array of a pair."""
    hflip, vflip, transpose = rng.random(3) < 0.5
    out = []
    for array in arrays:
        array = array[:, ::-1] if hflip else array
        array = array[::-1] if vflip else array
        out.append(np.ascontiguousarray(array.transpose(1, 0, 2) if transpose else array))
    return out


def make_sample(source: Source, gt_size: int, scale: int, profile: str, rng: np.random.Generator) -> Sample:
    """One training pair from one image: a random crop, augmented, then degraded (or cropped from its pair)."""
    clean = read_image(source.hq, DEFAULT_MAX_PIXELS).rgb
    lq_size = gt_size // scale
    if source.lq is None:
        top = int(rng.integers(0, clean.shape[0] - gt_size + 1))
        left = int(rng.integers(0, clean.shape[1] - gt_size + 1))
        (crop,) = _augment([clean[top : top + gt_size, left : left + gt_size]], rng)
        low, _ = PROFILES[profile](crop, scale, rng)
        return Sample(np.ascontiguousarray(low, dtype=np.float32), crop)
    low = read_image(source.lq, DEFAULT_MAX_PIXELS).rgb
    top = int(rng.integers(0, low.shape[0] - lq_size + 1))
    left = int(rng.integers(0, low.shape[1] - lq_size + 1))
    low_crop = low[top : top + lq_size, left : left + lq_size]
    clean_crop = clean[top * scale : (top + lq_size) * scale, left * scale : (left + lq_size) * scale]
    low_crop, clean_crop = _augment([low_crop, clean_crop], rng)
    return Sample(low_crop, clean_crop)


def batch(
    sources: list[Source], size: int, gt_size: int, scale: int, profile: str, seed: int, *where: int
) -> list[Sample]:
    """The batch at `where` = (step, micro-batch, process): images drawn with replacement, then cropped."""
    rng = _rng(seed, *where)
    picks = rng.integers(0, len(sources), size=size)
    return [make_sample(sources[int(i)], gt_size, scale, profile, rng) for i in picks]


def validation_samples(
    sources: list[Source], gt_size: int, scale: int, profile: str, seed: int
) -> list[tuple[str, Sample]]:
    """Fixed held-out pairs: each image's centre crop, degraded once with a generator of its own name."""
    samples = []
    lq_size = gt_size // scale
    for source in sources:
        clean = read_image(source.hq, DEFAULT_MAX_PIXELS).rgb
        if source.lq is None:
            top, left = (clean.shape[0] - gt_size) // 2, (clean.shape[1] - gt_size) // 2
            crop = clean[top : top + gt_size, left : left + gt_size]
            crop, low, _ = degrade_image(crop, profile, scale, seed, source.name)
            samples.append((source.name, Sample(low, crop)))
            continue
        low = read_image(source.lq, DEFAULT_MAX_PIXELS).rgb
        top, left = (low.shape[0] - lq_size) // 2, (low.shape[1] - lq_size) // 2
        low_crop = low[top : top + lq_size, left : left + lq_size]
        clean_crop = clean[top * scale : (top + lq_size) * scale, left * scale : (left + lq_size) * scale]
        samples.append((source.name, Sample(low_crop, clean_crop)))
    return samples


def folder_fingerprint(sources: list[Source]) -> str:
    """sha256 of the training files' names, sizes and modification times: which data made a model, without
    reading thousands of images again."""
    digest = hashlib.sha256()
    for source in sorted(sources, key=lambda s: s.name):
        for path in (source.hq, source.lq):
            if path is not None:
                stat = path.stat()
                digest.update(f"{source.name}\t{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
