"""OSEDiff (Wu et al. 2024, "One-Step Effective Diffusion Network for Real-World Image Super-Resolution";
code and weights: github.com/cswry/OSEDiff, Apache-2.0) as a one-step method of the `onestep` engine.

The authors' weights file (`osediff.pkl`) is one torch-saved plain dict:
    rank_unet, rank_vae                       LoRA ranks (ints)
    unet_lora_{encoder,decoder,others}_modules  PEFT target-module names of the three UNet adapters
                                              (adapters default_encoder / default_decoder / default_others)
    vae_lora_encoder_modules                  targets of the VAE-encoder adapter (default_encoder)
    state_dict_unet                           every UNet parameter whose name holds 'lora' or 'conv_in'
                                              (conv_in is trained in full), under PEFT's names
    state_dict_vae                            every VAE parameter whose name holds 'lora'
The file is read with `torch.load(weights_only=True)`: a file that needs more than tensors, lists and
numbers to unpickle is refused. The LoRA alpha is PEFT's default 8 (the authors' LoraConfig sets none),
so the scale is 8 / rank (2 for their rank 4).

What runs (their OSEDiff_test.forward): the LQ upscaled to the output size with bicubic, in [-1, 1];
VAE encode with the LoRA'd encoder, a posterior *sample* (they call latent_dist.sample(); studio seeds
it with --seed) times the scaling factor; one UNet call at t = 999 with the prompt's embedding, no
CFG; x0 = (z - sqrt(1 - abar) eps) / sqrt(abar) (what DDPMScheduler.step with one inference step
returns at t = 999, computed directly: the scheduler call raises on current diffusers, cswry/OSEDiff#60);
plain VAE decode, clamp. Their prompt comes from DAPE, a fine-tuned RAM Swin-L tagger (two more
checkpoints, 5.6 GB, RAM's own code): studio leaves it out and uses --prompt/presets or --caption.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import weights
from studio.diffusion import loading
from studio.diffusion.recipe import Components, plain_unet
from studio.engines.onestep.files import read_torch_file
from studio.engines.onestep.lora import activate, add_lora, fill_exactly, fuse
from studio.engines.onestep.method import MethodFacts, MethodSpec
from studio.errors import ModelLoadError, WeightsMissing

if TYPE_CHECKING:
    import numpy as np
    import torch

    from studio.diffusion.guidance import ConditionedModel
    from studio.diffusion.loading import ModelSource

FACTS = MethodFacts(stage1_resize="bicubic", size_multiple=8, authors_color_fix="adain")
UNET_ADAPTERS = (
    ("default_encoder", "unet_lora_encoder_modules"),
    ("default_decoder", "unet_lora_decoder_modules"),
    ("default_others", "unet_lora_others_modules"),
)
VAE_ADAPTER = ("default_encoder", "vae_lora_encoder_modules")
LISTS = tuple(key for _, key in (*UNET_ADAPTERS, VAE_ADAPTER))
RANKS = ("rank_unet", "rank_vae")
STATES = ("state_dict_unet", "state_dict_vae")
LAYOUT_KEYS = frozenset({"state_dict_unet", "state_dict_vae", "rank_unet"})
"""Top-level keys that tell an OSEDiff file from others (studio.diffusion.identify)."""


def layout_of(keys: Collection[str]) -> str | None:
    """'official' for a file holding OSEDiff's top-level keys, else None. S3Diff's file holds the same keys
    and more (its degradation embedding `w`, `state_embeddings`): that one is S3Diff's."""
    return "official" if LAYOUT_KEYS <= set(keys) and not {"w", "state_embeddings"} & set(keys) else None


def read_file(path: str, mmap: bool = True) -> dict[str, Any]:
    """The weights file as a checked dict; tensors memory-mapped (not read) when `mmap`."""
    loaded = read_torch_file(path, "OSEDiff weights file", mmap)
    _check_structure(loaded, Path(path))
    return loaded


def _check_structure(loaded: Any, file: Path) -> None:
    import torch

    if not isinstance(loaded, dict) or layout_of(loaded) is None:
        found = ", ".join(sorted(map(str, loaded))[:4]) if isinstance(loaded, dict) else type(loaded).__name__
        raise ModelLoadError(
            f"{file}: not an OSEDiff weights file (expected state_dict_unet, state_dict_vae, rank_unet; found {found})"
        )
    for key in (*RANKS, *LISTS, *STATES):
        value = loaded.get(key)
        if key in RANKS:
            ok = isinstance(value, int) and value > 0
        elif key in LISTS:
            ok = isinstance(value, list) and bool(value) and all(isinstance(name, str) for name in value)
        else:
            ok = isinstance(value, dict) and all(isinstance(t, torch.Tensor) for t in value.values())
        if not ok:
            raise ModelLoadError(
                f"{file}: '{key}' is missing or malformed ({type(value).__name__}); not the authors' layout"
            )


def apply_file(unet: Any, vae: Any, file: dict[str, Any], origin: str, copy: bool = True) -> int:
    """Inject the file's adapters and fill them (and conv_in) strictly; `copy=False` checks only."""
    try:
        for name, key in UNET_ADAPTERS:
            add_lora(unet, file["rank_unet"], file[key], name)
        add_lora(vae, file["rank_vae"], file[VAE_ADAPTER[1]], VAE_ADAPTER[0])
    except ValueError as exc:  # PEFT: a target module the base does not have
        raise ModelLoadError(f"{origin}: {str(exc).splitlines()[0][:200]}") from None
    placed = fill_exactly(unet, file["state_dict_unet"], _unet_selects, origin, "UNet", copy)
    placed += fill_exactly(vae, file["state_dict_vae"], _vae_selects, origin, "VAE", copy)
    activate(unet, [name for name, _ in UNET_ADAPTERS])
    activate(vae, [VAE_ADAPTER[0]])
    return placed


def _unet_selects(name: str) -> bool:
    return "lora" in name or "conv_in" in name


def _vae_selects(name: str) -> bool:
    return "lora" in name


def check(base: ModelSource, adapter: str) -> str:
    """--dry-run's verdict, the real load's first step: the file's structure, then (when the base's
    configs are on disk) every key and shape against meta-device copies of the base's UNet and VAE."""
    file = read_file(adapter, mmap=True)
    configs = _base_configs(base)
    if configs is None:
        return f"OSEDiff file read (keys checked against the base when it loads: {base.describe()} is one file)"
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs[0])
        vae = AutoencoderKL.from_config(configs[1])
    placed = apply_file(unet, vae, file, adapter, copy=False)
    return f"OSEDiff file: {placed} tensors fit the base (UNet rank {file['rank_unet']}, VAE rank {file['rank_vae']})"


def _base_configs(base: ModelSource) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The base's UNet and VAE configs from its folder or the hub cache (no download); None for one file."""
    if base.kind == "file":
        return None
    from diffusers import AutoencoderKL, UNet2DConditionModel

    kwargs: dict[str, Any] = {"local_files_only": True}
    if base.kind == "hub":
        kwargs["revision"] = base.revision
    try:
        return (
            UNet2DConditionModel.load_config(base.ref, subfolder="unet", **kwargs),
            AutoencoderKL.load_config(base.ref, subfolder="vae", **kwargs),
        )
    except (OSError, ValueError) as exc:
        raise WeightsMissing(
            f"{base.describe()}: cannot read its unet/vae configs ({str(exc).splitlines()[0][:120]})"
        ) from None


@dataclass
class OSEDiffModel:
    """SD 2.1-base components carrying OSEDiff's LoRA (see the module docstring)."""

    components: Components
    adapter: str
    ranks: tuple[int, int]
    fused: bool

    def prepare(self, lq: np.ndarray) -> None:
        """OSEDiff keeps no per-image state."""

    def conditioned_model(self) -> ConditionedModel:
        return plain_unet(self.components.unet)

    def describe(self) -> dict[str, Any]:
        return {
            "weights_file": self.adapter,
            "weights_sha256": weights.file_sha256(Path(self.adapter)),
            "lora_rank_unet": self.ranks[0],
            "lora_rank_vae": self.ranks[1],
            "lora_scale": 8 / self.ranks[0],
            "lora_fused": self.fused,
        }


def load(base: ModelSource, adapter: str, dtype: torch.dtype, fused: bool) -> OSEDiffModel:
    """The base pipeline's components in `dtype` with the OSEDiff file applied (and merged when `fused`)."""
    from diffusers import StableDiffusionPipeline

    file = read_file(adapter, mmap=False)
    pipe = loading.load_pipeline(StableDiffusionPipeline, base, "sd-2.1-base", dtype)
    apply_file(pipe.unet, pipe.vae, file, adapter)
    if fused:
        fuse(pipe.unet)
        fuse(pipe.vae)
    components = Components(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler)
    return OSEDiffModel(components, adapter, (file["rank_unet"], file["rank_vae"]), fused)


SPEC = MethodSpec(
    name="osediff",
    summary="OSEDiff: SD 2.1-base + LoRA, one UNet evaluation at t = 999 (Apache-2.0 code and weights)",
    facts=FACTS,
    default_base="sd-2.1-base",
    default_weights="osediff-sd21base",
    license="Apache-2.0 (OSEDiff code and weights) + CreativeML Open RAIL++-M (SD 2.1-base)",
    layout_of=layout_of,
    check=check,
    load=load,
)
