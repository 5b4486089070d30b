"""S3Diff (Zhang et al. 2024; github.com/ArcticHare105/S3Diff, code and weights Apache-2.0) as a one-step
method of the `onestep` engine: SD-Turbo with degradation-guided LoRA on the UNet and the VAE encoder.

What runs (the authors' `src/inference_s3diff.py` with `src/s3diff_tile.py`): the degradation estimator
scores the input's blur and noise; the input is upscaled bilinearly to the output size, mapped to
[-1, 1] and reflect-padded to a multiple of 64; the LoRA'd VAE encoder's posterior is *sampled* (seeded
by --seed) and scaled; the UNet runs once at t = 999 on [negative, positive] fixed prompts, combined with
guidance 1.07; x0 is read off the epsilon prediction; the VAE decodes; wavelet colour fix. Modules:
`degradation` (the estimator), `modulation` (guidance MLPs and the per-block LoRA modulation), `keys`
(the files' key table), `files` (safe reading, checks), `build` (modules and strict placement), `model`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from studio.engines.onestep.method import MethodFacts, MethodSpec
from studio.engines.onestep.s3diff.files import BASE_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    import torch

    from studio.diffusion.loading import ModelSource
    from studio.engines.onestep.s3diff.model import S3DiffModel

POSITIVE_PROMPT = "A high-resolution, 8K, ultra-realistic image with sharp focus, vibrant colors, and natural lighting."
NEGATIVE_PROMPT = "oil painting, cartoon, blur, dirty, messy, low quality, deformation, low resolution, oversmooth"
"""The authors' fixed prompts (`--pos_prompt`/`--neg_prompt` defaults of their test script)."""
FACTS = MethodFacts(
    stage1_resize="bilinear",
    size_multiple=64,
    pad_mode="reflect",
    timestep=999,
    guidance=1.07,
    prompt=POSITIVE_PROMPT,
    negative_prompt=NEGATIVE_PROMPT,
    sample_posterior=True,
    authors_color_fix="wavelet",
)
LAYOUT_KEYS = frozenset({"state_dict_unet", "state_dict_vae", "w", "state_embeddings"})
"""Top-level entries that tell an S3Diff file from an OSEDiff one (which has neither `w` nor `state_embeddings`)."""


def layout_of(keys: Collection[str]) -> str | None:
    """'official' for a file holding S3Diff's top-level entries, else None."""
    return "official" if LAYOUT_KEYS <= set(keys) else None


def check(base: ModelSource, adapter: str) -> str:
    """Both files (weights and estimator) key by key against the base's configs, no tensor read."""
    from studio.engines.onestep.s3diff.build import check as check_files

    return check_files(adapter, base)


def load(base: ModelSource, adapter: str, dtype: torch.dtype, fuse: bool) -> S3DiffModel:
    from studio.engines.onestep.s3diff.model import load as load_model

    return load_model(base, adapter, dtype, fuse)


SPEC = MethodSpec(
    name="s3diff",
    summary="S3Diff: SD-Turbo + degradation-guided LoRA, one guided UNet evaluation at t = 999",
    facts=FACTS,
    default_base=BASE_NAME,
    default_weights=WEIGHTS_NAME,
    license=(
        "Apache-2.0 (S3Diff code and weights) + Stability AI Community License (SD-Turbo: free for research, "
        "non-commercial use and organisations under USD 1M annual revenue; otherwise an enterprise licence)"
    ),
    layout_of=layout_of,
    check=check,
    load=load,
)
