"""The StableSR recipe: image-to-image from the stage-1 image's latent, steered by a StableSR adapter
(time-aware encoder + SPADE) or by diffusers ControlNets (the permissive tile variant), with an optional
per-step pull of the predicted clean latent toward the stage-1 latent and CFW decoding.

Differences from the default `Recipe`, each one overridden step:
- 3 `prepare_conditioning`: encode the stage-1 image once (posterior sample, as diffusers' img2img); with a
  StableSR adapter, that latent is the encoder's input (`stablesr_latent`, cropped per tile);
- 5 `initial_latents`: always the stage-1 latent noised to the first timestep run (q_sample at t_start, as
  StableSR does at t = 999 and diffusers' img2img at strength 1), never pure noise;
- 6 `conditioned_model`: the UNet under the adapter's SPADE hooks; `denoiser` adds the pull wrapper outside
  tiling (it acts on the whole latent);
- 7 `decode`: with CFW, the CFW autoencoder's decoder fuses its encoder's features of the stage-1 image
  (tiled like any decode: each tile fuses the features of its own region).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion import tiled_vae
from studio.diffusion.conditioning import Conditioning, unet_kwargs
from studio.diffusion.pixels import HostPixels
from studio.diffusion.recipe import Components, Recipe, Request
from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import ConditionedModel, Denoiser
    from studio.diffusion.latent_tiling import Window
    from studio.diffusion.offload import Placement
    from studio.diffusion.samplers import Sampler
    from studio.engines.stablesr.networks import CFWFusion, StableSRAdapter

STRUCT_KEY = "stablesr_latent"


@dataclass(frozen=True, kw_only=True)
class StableSRRequest(Request):
    """`strength` is --denoise (fraction of the schedule run); `adapter_scale` the SPADE modulation scale
    (ControlNets take theirs from `control_scales`); `pull` 0-1; `cfw` the CFW weight w."""

    pull: float = 0.0
    adapter_scale: float = 1.0
    cfw: float = 0.0


@dataclass
class CFWDecoder:
    """The CFW autoencoder (its own encoder/decoder weights) and its fusion layers, attached."""

    vae: Any
    fusion: CFWFusion

    def decode(self, stage1: HostPixels, latents: torch.Tensor, weight: float, tile: int, pad: int) -> np.ndarray:
        """stage1 read in [-1, 1]; latents already divided by the scaling factor; `tile` latent cells (0: whole),
        each tile fusing the encoder's features of its own region of the stage-1 image."""
        self.fusion.weight = weight
        return tiled_vae.decode_fused(self.vae, latents.to(self.vae.dtype), stage1, self.fusion.capturing, tile, pad)


class StableSRRecipe(Recipe):
    """Runs StableSR (adapter given) or the tile-ControlNet variant (components carry ControlNets)."""

    def __init__(
        self,
        components: Components,
        placement: Placement,
        dtype: torch.dtype,
        adapter: StableSRAdapter | None = None,
        cfw: CFWDecoder | None = None,
    ) -> None:
        super().__init__(components, placement, dtype)
        self.adapter = adapter
        self.cfw = cfw
        if adapter is not None:
            adapter.to(device=self.device, dtype=dtype)
            adapter.attach(components.unet)
        if cfw is not None:
            cfw.vae.to(device=self.device)
            cfw.fusion.to(device=self.device, dtype=cfw.vae.dtype)
            cfw.fusion.attach(cfw.vae)
        self._stage1: torch.Tensor | None = None

    def check_inputs(self, image: np.ndarray, request: Request) -> None:
        super().check_inputs(image, request)
        if isinstance(request, StableSRRequest):
            if request.cfw > 0 and self.cfw is None:
                raise UsageError(f"--cfw {request.cfw}: needs the CFW weights (vqgan_cfw_00011.ckpt) in --adapter")
            if int(request.steps * request.strength) < 1:
                raise UsageError(
                    f"--denoise {request.strength:g} with --steps {request.steps} runs no step; "
                    "raise --steps or --denoise"
                )
            if not 0 <= request.pull <= 1:
                raise UsageError(f"--pull {request.pull}: expected a value from 0 to 1")

    def prepare_conditioning(
        self, image: np.ndarray, request: Request, cond: Conditioning, uncond: Conditioning, generator: torch.Generator
    ) -> tuple[Conditioning, Conditioning]:
        cond, uncond = super().prepare_conditioning(image, request, cond, uncond, generator)
        self._stage1 = self.encode_image(image, request, generator, cond["encoder_hidden_states"].dtype)
        if self.adapter is None:
            return cond, uncond
        extra, spatial = {STRUCT_KEY: self._stage1}, {STRUCT_KEY: 1}
        return cond.with_tensors(extra, spatial), uncond.with_tensors(extra, spatial)

    def initial_latents(
        self, image: np.ndarray, request: Request, sampler: Sampler, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(tuple(self._stage1.shape), generator=generator, device=self.device, dtype=dtype)
        return sampler.initial_latents(noise, self._stage1)

    def conditioned_model(self, request: Request) -> ConditionedModel:
        if self.adapter is None:
            return super().conditioned_model(request)
        self.adapter.scale = request.adapter_scale if isinstance(request, StableSRRequest) else 1.0
        return spade_unet(self.components.unet, self.adapter)

    def denoiser(self, request: Request, cond: Conditioning, uncond: Conditioning, size: Any) -> Denoiser:
        denoiser = super().denoiser(request, cond, uncond, size)
        pull = request.pull if isinstance(request, StableSRRequest) else 0.0
        if pull > 0:
            scheduler = self.components.scheduler
            denoiser = pulled(denoiser, self._stage1, pull, scheduler.alphas_cumprod, scheduler.config.prediction_type)
        return denoiser

    def decode(self, latents: torch.Tensor, request: Request) -> np.ndarray:
        weight = request.cfw if isinstance(request, StableSRRequest) else 0.0
        if self.cfw is None or weight == 0:
            return super().decode(latents, request)
        stage1 = HostPixels(self._stage1_image, self.device, self.cfw.vae.dtype, signed=True)
        with self.placement.using(self.cfw.vae):
            latents = latents / self.components.vae.config.scaling_factor
            return self.cfw.decode(stage1, latents, weight, request.vae_tile, request.vae_pad)

    def __call__(self, image: np.ndarray, request: Request, progress: Any = None, on_step: Any = None) -> np.ndarray:
        self._stage1_image = image
        try:
            return super().__call__(image, request, progress, on_step)
        finally:
            self._stage1 = self._stage1_image = None


def spade_unet(unet: Any, adapter: StableSRAdapter) -> ConditionedModel:
    """The UNet with every ResBlock modulated by the adapter's features of the (cropped) stage-1 latent."""

    def model(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, window: Window | None) -> torch.Tensor:
        cond = cond.crop(window)
        with adapter.conditioned(cond[STRUCT_KEY].to(x.dtype), t.reshape(-1)[:1].expand(x.shape[0])):
            return unet(x, t, **unet_kwargs(cond), return_dict=False)[0]

    return model


def pulled(
    denoiser: Denoiser, target: torch.Tensor, amount: float, alphas_cumprod: torch.Tensor, prediction_type: str
) -> Denoiser:
    """Move the predicted clean latent x0 a fraction `amount` toward `target` each step, and return the
    prediction (epsilon or v) that the moved x0 implies for the same x_t, so any scheduler can step on it."""

    def denoise(x: torch.Tensor, t: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        pred = denoiser(x, t, window)
        a = alphas_cumprod.to(x.device)[t.long().reshape(-1)[0]].float()
        sa, sb = a.sqrt(), (1 - a).sqrt()
        xf, pf = x.float(), pred.float()
        if prediction_type == "v_prediction":
            x0 = sa * xf - sb * pf
        else:
            x0 = (xf - sb * pf) / sa
        x0 = x0 + amount * (target.float() - x0)
        eps = (xf - sa * x0) / sb
        out = sa * eps - sb * x0 if prediction_type == "v_prediction" else eps
        return out.to(pred.dtype)

    return denoise
