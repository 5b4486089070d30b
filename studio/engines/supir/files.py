"""SUPIR's official files beside an SDXL base: the base's configs read without loading, the file's parameters
counted from its index, and the strict load (networks.py maps the keys)."""

from __future__ import annotations

import math
from typing import Any

from studio.diffusion import loading
from studio.engines.supir.keys import PREFIXES
from studio.errors import ModelLoadError


def base_configs(source: loading.ModelSource) -> tuple[Any, Any]:
    """(UNet config, VAE config) of a diffusers SDXL folder or cached hub id, read without loading or
    downloading, with attribute access as a loaded model's config has."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.configuration_utils import FrozenDict

    where: dict[str, Any] = {"revision": source.revision, "local_files_only": True} if source.kind == "hub" else {}
    try:
        unet = UNet2DConditionModel.load_config(source.ref, subfolder="unet", **where)
        vae = AutoencoderKL.load_config(source.ref, subfolder="vae", **where)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {source.describe()}: {str(exc).strip().splitlines()[0][:200]}") from exc
    return FrozenDict(unet), FrozenDict(vae)


def official_params(path: str) -> tuple[int, int]:
    """(parameters in the diffusion dtype, in the VAE's dtype) of an official file, counted from its index:
    the adaptor and connectors, and the denoise encoder (which runs in the VAE's dtype)."""
    counts = dict.fromkeys(PREFIXES, 0)
    for key, info in loading.weights_file_index(path, "supir-v0q").items():
        part = next((name for name, prefix in PREFIXES.items() if key.startswith(prefix)), None)
        if part is not None:
            counts[part] += math.prod(info.shape)
    return counts["adaptor"] + counts["connectors"], counts["denoise_encoder"]


def load_supir(path: str, pipe: Any, dtype: Any, vae_dtype: Any) -> Any:
    """SUPIR-v0Q/v0F (adaptor, connectors, denoise encoder) on top of the SDXL base, strictly mapped."""
    from studio.engines.supir import networks as official  # torch at import

    state = loading.load_weights_file(path, "supir-v0q")
    adapter = official.load_official(state, path, pipe.unet.config, pipe.vae.config, dtype)
    adapter.denoise_encoder.to(vae_dtype)
    return adapter
