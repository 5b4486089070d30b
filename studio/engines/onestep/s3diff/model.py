"""S3Diff as a loaded one-step model: SD-Turbo's components carrying the LoRA, and the per-image modulation.

Per image, `prepare` scores the input's blur and noise with the estimator (at the input's own size, as the
authors' script does before upscaling), turns the scores into one r x r matrix per UNet and VAE-encoder
block, and folds each into its layers' LoRA A weights (`modulation.LoraModulation.apply`). After that the
UNet and the VAE are plain PEFT-LoRA diffusers models: the engine encodes, tiles, guides and decodes
them like any other method's, and the modulation is the same in every latent window of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio import weights
from studio.diffusion import loading
from studio.diffusion.recipe import Components, plain_unet
from studio.engines.onestep.s3diff.build import load_into
from studio.engines.onestep.s3diff.files import BASE_NAME, S3DiffFile, locate, read
from studio.engines.onestep.s3diff.keys import LORA_ALPHA, UNET_ADAPTER, VAE_ADAPTER

if TYPE_CHECKING:
    import numpy as np
    import torch

    from studio.diffusion.guidance import ConditionedModel
    from studio.diffusion.loading import ModelSource
    from studio.engines.onestep.s3diff.modulation import LoraModulation


@dataclass
class S3DiffModel:
    """SD-Turbo components with S3Diff's LoRA, its degradation guidance and estimator (float32)."""

    components: Components
    loaded: S3DiffFile
    guidance: Any
    estimator: Any
    unet_lora: LoraModulation
    vae_lora: LoraModulation
    fused: bool
    scores: tuple[float, ...] = field(default=())

    def prepare(self, lq: np.ndarray) -> None:
        """Estimate the input's degradation and fold the resulting matrices into the LoRA A weights."""
        import torch

        device = execution_device(self.components.unet)
        self.guidance.to(device)
        self.estimator.to(device)
        image = torch.from_numpy(lq.transpose(2, 0, 1).copy())[None].to(device, torch.float32)
        with torch.no_grad():
            scores = self.estimator(image)
            unet_matrices, vae_matrices = self.guidance(scores)
        self.modulate(unet_matrices[0], vae_matrices[0])
        self.scores = tuple(round(float(s), 4) for s in scores[0])

    def modulate(self, unet_matrices: torch.Tensor, vae_matrices: torch.Tensor) -> None:
        """Set the per-block matrices directly (tests; `prepare` computes them from the image)."""
        self.unet_lora.apply(unet_matrices)
        self.vae_lora.apply(vae_matrices)
        if self.fused and not _offloaded(self.components.unet):
            self.unet_lora.merge()
            self.vae_lora.merge()

    def conditioned_model(self) -> ConditionedModel:
        return plain_unet(self.components.unet)

    def describe(self) -> dict[str, Any]:
        files = self.loaded.files
        return {
            "weights_file": str(files.weights),
            "weights_sha256": weights.file_sha256(files.weights),
            "estimator_file": str(files.estimator),
            "estimator_sha256": weights.file_sha256(files.estimator),
            "lora_rank_unet": self.loaded.rank_unet,
            "lora_rank_vae": self.loaded.rank_vae,
            "lora_scale": LORA_ALPHA / self.loaded.rank_unet,
            "lora_scale_vae": LORA_ALPHA / self.loaded.rank_vae,
            "lora_fused": self.fused,
            "degradation_scores": dict(zip(("blur", "noise"), self.scores)),
        }


def execution_device(unet: Any) -> torch.device:
    """Where the UNet runs: accelerate's execution device when its weights are offloaded, else theirs."""
    import torch

    for module in unet.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(p.device for p in unet.parameters())


def _offloaded(module: Any) -> bool:
    return any(p.device.type == "meta" for p in module.parameters())


def load(base: ModelSource, adapter: str, dtype: torch.dtype, fuse: bool) -> S3DiffModel:
    """SD-Turbo (or the given base) in `dtype` with both S3Diff files applied; every key checked first."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.engines.onestep.s3diff.modulation import LoraModulation, unet_block, vae_block

    loaded = read(locate(adapter))
    pipe = loading.load_pipeline(StableDiffusionPipeline, base, BASE_NAME, dtype)
    guidance, estimator = load_into(pipe.unet, pipe.vae, loaded, torch.device("cpu"))
    components = Components(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler)
    return S3DiffModel(
        components,
        loaded,
        guidance,
        estimator,
        LoraModulation(pipe.unet, UNET_ADAPTER, unet_block),
        LoraModulation(pipe.vae, VAE_ADAPTER, vae_block),
        fuse,
    )
