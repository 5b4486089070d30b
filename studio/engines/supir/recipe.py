"""SUPIR's recipe on the shared diffusion skeleton: SDXL conditioning, an adaptor, restoration-guided EDM.

What differs from the base recipe (studio/diffusion/recipe.py):
2. encode_prompt: SDXL's two CLIP encoders (penultimate hidden states side by side, the second's pooled
   projection) and fixed size conditioning (original 1024x1024, crop (0, 0), target 1024x1024), as SUPIR
   conditions every image whatever its size.
3. prepare_conditioning: the stage-1 image x1 steers the adaptor (a tile ControlNet's control image, or
   for the official weights z_LQ from the denoise encoder); its latent z1 = E(x1) is the restoration
   guidance target.
4. make_sampler: `EDMSampler` (Euler with churn on SDXL's sigmas) with `restoration_guidance` toward z1.
The linear CFG and control-scale schedules are functions of the timestep the model sees (its sigma).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion import tiled_vae
from studio.diffusion.conditioning import Conditioning
from studio.diffusion.controlnet import control_key, controlled_unet
from studio.diffusion.pixels import HostPixels, control_pixels
from studio.diffusion.recipe import Components, Recipe, Request
from studio.diffusion.samplers.edm import Churn, EDMSampler
from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import ConditionedModel
    from studio.diffusion.samplers import Sampler
    from studio.diffusion.samplers.edm import EDMStep

SIZE_CONDITIONING = (1024, 1024, 0, 0, 1024, 1024)
"""SDXL time ids SUPIR always uses: original size, crop top-left, target size."""
SCHEDULERS = ("edm-euler", "dpm++-2m-karras")
"""--scheduler values of the supir engine: SUPIR's Euler with churn (default), or DPM-Solver++(2M) Karras."""
DPM_SCHEDULER = SCHEDULERS[1]
GUIDANCE_SIGMA_MIN = 0.05  # SUPIR stops pulling toward z1 once the next sigma is this small


@dataclass(frozen=True, kw_only=True)
class SupirRequest(Request):
    """A recipe request plus SUPIR's sampler settings. tau < 0: no restoration guidance."""

    tau: float = -1.0
    churn: float = 0.0
    s_noise: float = 1.0


@dataclass
class SDXLComponents(Components):
    """SDXL's modules: a second tokenizer and text encoder, and the adaptor that steers the UNet."""

    text_encoder_2: Any = field(kw_only=True)
    tokenizer_2: Any = field(kw_only=True)
    adaptor: Any = field(default=None, kw_only=True)  # an official SUPIR adaptor (adapters/supir.py), if any

    @classmethod
    def from_pipeline(cls, pipe: Any, controlnets: list[Any] | None = None, adaptor: Any = None) -> SDXLComponents:
        return cls(
            pipe.vae,
            pipe.text_encoder,
            pipe.tokenizer,
            pipe.unet,
            pipe.scheduler,
            controlnets=controlnets or [],
            text_encoder_2=pipe.text_encoder_2,
            tokenizer_2=pipe.tokenizer_2,
            adaptor=adaptor,
        )

    def modules(self) -> list[Any]:
        extra = [self.text_encoder_2] + ([self.adaptor] if self.adaptor is not None else [])
        return [*super().modules(), *extra]

    def encoders(self) -> tuple[Any, ...]:
        return (self.text_encoder, self.text_encoder_2)


def linear_schedule(start: float, end: float, sigma: float, top: float) -> float:
    """start at sigma = top, end at sigma = 0, linear in between (SUPIR's linear CFG and control scale)."""
    return (start - end) * sigma / top + end


def restoration_guidance(
    target: torch.Tensor, top: float, tau: float, min_next_sigma: float = GUIDANCE_SIGMA_MIN
) -> Callable[..., torch.Tensor]:
    """The x0 hook D <- D - (D - z1) (sigma / top)^tau while the next sigma > 0.05 (Yu et al. 2024, eq. 7).

    tau = 0 keeps D at z1 until the last steps; larger tau lets go sooner; tau < 0 turns it off (SUPIR
    itself also treats 0 as off; here 0 is the strongest pull, the end of the --strength range). The
    hook is linear in D, so applying it once to the tile-blended D equals SUPIR's per-tile application.
    """

    def hook(x0: torch.Tensor, x: torch.Tensor, step: EDMStep) -> torch.Tensor:
        if tau < 0 or step.sigma_next <= min_next_sigma:
            return x0
        return x0 - (x0 - target.to(x0.dtype)) * (step.sigma / top) ** tau

    return hook


class SupirRecipe(Recipe):
    """The recipe of the `supir` engine; `image` is the stage-1 image x1 at the working size."""

    components: SDXLComponents

    def __init__(self, components: SDXLComponents, placement: Any, dtype: torch.dtype, vae_dtype: torch.dtype) -> None:
        super().__init__(components, placement, dtype)
        self.vae_dtype = vae_dtype
        if components.vae.dtype != vae_dtype:
            components.vae.to(dtype=vae_dtype)  # fp16 overflows in SDXL's VAE; bf16 does not (SUPIR's choice)
        self._target: torch.Tensor | None = None
        self.stage1_image: np.ndarray | None = None  # x1 = D(z_LQ) of the last call, with official weights

    @property
    def size_multiple(self) -> int:
        """The VAE's downsampling times the UNet's, so skip connections line up."""
        return self.components.vae_scale_factor * 2 ** (len(self.components.unet.config.block_out_channels) - 1)

    def check_inputs(self, image: np.ndarray, request: Request) -> None:
        """The base checks; the official adaptor takes one control scale like a single ControlNet."""
        official = self.components.adaptor is not None
        super().check_inputs(image, replace(request, control_scales=()) if official else request)
        if not isinstance(request, SupirRequest):
            raise UsageError("the supir recipe needs a SupirRequest")
        if request.strength != 1:
            raise UsageError(f"strength {request.strength}: SUPIR always samples from pure noise (strength 1)")

    # 2 -------------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, negative: str, with_negative: bool) -> tuple[Conditioning, Conditioning]:
        """Both CLIP encoders' penultimate states (concatenated) + the second's pooled output + time ids.

        SUPIR always encodes the negative prompt (CFG 1 at the start of a linear schedule still runs both).
        """
        cond = self._encode_sdxl(prompt)
        uncond = self._encode_sdxl(negative) if with_negative else cond
        return cond, uncond

    def _encode_sdxl(self, text: str) -> Conditioning:
        import torch

        parts = self.components
        hidden, pooled = [], None
        for tokenizer, encoder in ((parts.tokenizer, parts.text_encoder), (parts.tokenizer_2, parts.text_encoder_2)):
            with self.placement.using(encoder):
                ids = tokenizer(
                    text,
                    padding="max_length",
                    max_length=tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids.to(self.device)
                out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # the second encoder's projected pooled output
        time_ids = torch.tensor([SIZE_CONDITIONING], device=self.device)
        return Conditioning(
            {
                "encoder_hidden_states": torch.cat(hidden, dim=-1).to(self.dtype),
                "text_embeds": pooled.to(self.dtype),
                "time_ids": time_ids.to(self.dtype),
            }
        )

    # 3 -------------------------------------------------------------------------------------------
    def prepare_conditioning(
        self, image: np.ndarray, request: Request, cond: Conditioning, uncond: Conditioning, generator: torch.Generator
    ) -> tuple[Conditioning, Conditioning]:
        """x1 as the ControlNet's control image, or for the official adaptor z_LQ from the denoise encoder and
        x1 = D(z_LQ); z1 = E(x1) is the restoration guidance target."""
        adaptor, vae = self.components.adaptor, self.components.vae
        if adaptor is not None:
            with self.placement.using(adaptor), self.placement.using(vae):
                pixels = HostPixels(image, self.device, vae.dtype, signed=True)
                z_lq = adaptor.stage1_latent(vae, pixels, request.vae_tile, request.vae_pad)
                self.stage1_image = image = self.decode(z_lq, request)
            extra, spatial = {"z_lq": z_lq.to(self.dtype)}, {"z_lq": 1}
        else:
            pixels = control_pixels(image, self.device, self.dtype, bool(request.unet_tile))
            extra = {control_key(i): pixels for i in range(len(self.components.controlnets))}
            spatial = dict.fromkeys(extra, self.components.vae_scale_factor)
        self._target = self.encode_mode(image, request)
        return cond.with_tensors(extra, spatial), uncond.with_tensors(extra, spatial)

    def encode_mode(self, image: np.ndarray, request: Request) -> torch.Tensor:
        """The posterior mode of the VAE encoder, scaled (SUPIR encodes without sampling), in `vae_tile` tiles."""
        vae = self.components.vae
        with self.placement.using(vae):
            pixels = HostPixels(image, self.device, vae.dtype, signed=True)
            latents = tiled_vae.encode(vae, pixels, request.vae_tile, request.vae_pad)
        return (latents * vae.config.scaling_factor).to(self.dtype)

    # 4 -------------------------------------------------------------------------------------------
    def make_sampler(self, request: Request, generator: torch.Generator) -> Sampler:
        """Euler with churn on SDXL's sigmas (SUPIR's), or DPM-Solver++(2M) Karras for few steps; either way
        the clean estimate is pulled toward z1 each step."""
        tau, churn, s_noise = (
            (request.tau, request.churn, request.s_noise) if isinstance(request, SupirRequest) else (-1.0, 0.0, 1.0)
        )
        hook = restoration_guidance(self._target, self.sigma_max, tau) if self._target is not None else None
        if request.scheduler == DPM_SCHEDULER:
            from studio.diffusion.samplers.dpmpp import DPMSolverSampler

            return DPMSolverSampler(self.components.scheduler, request.steps, hook)
        return EDMSampler(
            self.components.scheduler, request.steps, generator, churn=Churn(churn, s_noise=s_noise), hook=hook
        )

    @property
    def sigma_max(self) -> float:
        """The largest training sigma (14.6146 for SDXL): where linear schedules take their start value."""
        abar = self.components.scheduler.alphas_cumprod.double()
        return float(((1 - abar[-1]) / abar[-1]).sqrt())

    def sigma_of(self, t: torch.Tensor) -> float:
        """The training sigma of timestep t (what the model is told)."""
        abar = float(self.components.scheduler.alphas_cumprod[int(t)])
        return ((1 - abar) / abar) ** 0.5

    # 6 -------------------------------------------------------------------------------------------
    def denoise(self, sampler: Sampler, denoiser: Any, latents: torch.Tensor, progress: Any, on_step: Any) -> Any:
        """The shared loop, with the official adaptor on the device while it runs (model offload)."""
        if self.components.adaptor is None:
            return super().denoise(sampler, denoiser, latents, progress, on_step)
        with self.placement.using(self.components.adaptor):
            return super().denoise(sampler, denoiser, latents, progress, on_step)

    def conditioned_model(self, request: Request) -> ConditionedModel:
        """The SDXL UNet steered by the official adaptor + connectors, or by the tile ControlNet."""
        scale = request.control_scales[0] if request.control_scales else 1.0
        if self.components.adaptor is not None:
            return self.components.adaptor.conditioned_model(self.components.unet, scale)
        return controlled_unet(self.components.unet, self.components.controlnets, (scale,))
