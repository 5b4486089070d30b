"""S3Diff's modules on a diffusers SD-Turbo: PEFT LoRA on the UNet and the VAE encoder with the file's ranks and
targets, the degradation guidance and estimator, and the strict placement of every tensor of both files.

`check` builds the same modules on the meta device from the base's configs, so it compares every key and
shape of both files without loading a weight; `load_into` builds them for real and then places the tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.engines.onestep.s3diff.files import (
    S3DiffFile,
    base_configs,
    check_fit,
    locate,
    read,
)
from studio.engines.onestep.s3diff.keys import ESTIMATOR_PREFIX, LORA_ALPHA, UNET_ADAPTER, VAE_ADAPTER
from studio.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from studio.diffusion.loading import ModelSource
    from studio.engines.onestep.s3diff.degradation import DegradationEstimator
    from studio.engines.onestep.s3diff.modulation import DegradationGuidance


def attach_lora(unet: Any, vae: Any, loaded: S3DiffFile) -> None:
    """PEFT adapters as the authors add them (`default` on the UNet, `vae_skip` on the VAE encoder)."""
    from peft import LoraConfig

    for model, rank, targets, adapter in (
        (unet, loaded.rank_unet, loaded.unet_targets, UNET_ADAPTER),
        (vae, loaded.rank_vae, loaded.vae_targets, VAE_ADAPTER),
    ):
        config = LoraConfig(r=rank, lora_alpha=LORA_ALPHA, init_lora_weights=False, target_modules=targets)
        try:
            model.add_adapter(config, adapter_name=adapter)
        except ValueError as exc:
            raise ModelLoadError(
                f"{loaded.files.weights}: its LoRA targets do not fit this base's {type(model).__name__} "
                f"({str(exc).splitlines()[0][:160]})"
            ) from exc


def build_guidance(loaded: S3DiffFile) -> tuple[DegradationGuidance, DegradationEstimator]:
    from studio.engines.onestep.s3diff.degradation import DegradationEstimator
    from studio.engines.onestep.s3diff.modulation import DegradationGuidance

    estimator_state = {
        k[len(ESTIMATOR_PREFIX) :]: v for k, v in loaded.tensors.items() if k.startswith(ESTIMATOR_PREFIX)
    }
    try:
        estimator = DegradationEstimator.for_state(estimator_state)
    except KeyError as exc:
        raise ModelLoadError(f"{loaded.files.estimator}: missing '{exc.args[0]}'; not S3Diff's estimator") from exc
    return DegradationGuidance(loaded.rank_unet, loaded.rank_vae), estimator


def expected_shapes(unet: Any, vae: Any, guidance: Any, estimator: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor the two files must fill, under studio's names: what the authors' `save_model` keeps of
    the UNet ('lora' or 'conv_in' in the key) and of the VAE ('lora'), all of guidance and estimator."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, tensor in unet.state_dict().items():
        if "lora" in key or "conv_in" in key:
            shapes["unet." + key] = tuple(tensor.shape)
    for key, tensor in vae.state_dict().items():
        if "lora" in key:
            shapes["vae." + key] = tuple(tensor.shape)
    for prefix, module in (("guidance.", guidance), (ESTIMATOR_PREFIX, estimator)):
        shapes.update({prefix + key: tuple(tensor.shape) for key, tensor in module.state_dict().items()})
    return shapes


def check(adapter: str, base: ModelSource | None = None) -> str:
    """Both files against the base's architecture, key by key and shape by shape, reading no tensor data;
    `ModelLoadError` names the first misfit. Returns a line for --dry-run."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    loaded = read(locate(adapter))
    unet_config, vae_config = base_configs(base)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(vae_config)
        attach_lora(unet, vae, loaded)
        guidance, estimator = build_guidance(loaded)
    check_fit(loaded, expected_shapes(unet, vae, guidance, estimator))
    return describe_files(loaded)


def describe_files(loaded: S3DiffFile) -> str:
    lora = sum(1 for key in loaded.tensors if "lora_A" in key)
    return (
        f"S3Diff weights {loaded.files.weights.name} (LoRA rank {loaded.rank_unet} UNet / {loaded.rank_vae} VAE "
        f"encoder, {lora} layers, degradation guidance) + estimator {loaded.files.estimator.name}: every key fits"
    )


def load_into(unet: Any, vae: Any, loaded: S3DiffFile, device: torch.device) -> tuple[Any, Any]:
    """Attach the LoRA, check every key and shape, then copy each tensor into its parameter (one at a time,
    cast to the parameter's dtype). Returns the guidance and estimator (float32, on `device`)."""
    attach_lora(unet, vae, loaded)
    guidance, estimator = build_guidance(loaded)
    check_fit(loaded, expected_shapes(unet, vae, guidance, estimator))
    for prefix, module in (("unet.", unet), ("vae.", vae), ("guidance.", guidance), (ESTIMATOR_PREFIX, estimator)):
        part = {k[len(prefix) :]: v for k, v in loaded.tensors.items() if k.startswith(prefix)}
        _, unexpected = module.load_state_dict(part, strict=False)
        if unexpected:
            raise ModelLoadError(f"{loaded.files.weights}: '{unexpected[0]}' fits no parameter")
    return guidance.to(device).eval(), estimator.to(device).eval()
