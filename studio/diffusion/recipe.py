"""The diffusion pipeline skeleton every engine shares; engines override steps, never the loop.

`Recipe.__call__` reads as diffusers' pipelines do:

    1. check_inputs            precise errors before any tensor work
    2. encode_prompt           -> (cond, uncond) `Conditioning`s holding `encoder_hidden_states`
    3. prepare_conditioning    add named tensors (control images, low-res image, SDXL ids, ...)
    4. make_sampler            a diffusers scheduler, or samplers.edm.EDMSampler (override to choose)
    5. initial_latents         pure noise, or the image's latents noised to the start (strength < 1)
    6. denoise                 conditioned_model -> guidance -> tiling -> the sampler's loop,
                               progress(done, total) and on_step(index, latents) after every step
    7. decode                  latents -> (H, W, 3) float32 image in [0, 1], tiled when asked

The default steps make a Stable Diffusion (1.x/2.x) image-to-image pipeline steered by the components'
ControlNets (if any) with the input image as their control image. An engine subclasses and overrides
what differs: SD x4 (upscale_pipeline.py) replaces 3, 5's latent size and the conditioned model; a
StableSR engine would add encoder features in 3 and wrap the UNet in `conditioned_model`; a SUPIR engine
returns an `EDMSampler` with `restoration_guidance` from 4.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.diffusion import tiled_vae
from studio.diffusion.conditioning import Conditioning, unet_kwargs
from studio.diffusion.controlnet import control_key, controlled_unet
from studio.diffusion.guidance import (
    ConditionedModel,
    Denoiser,
    Scale,
    guided,
    uses_negative,
)
from studio.diffusion.latent_tiling import tiled_denoiser
from studio.diffusion.offload import Placement
from studio.diffusion.pixels import HostPixels, control_pixels
from studio.diffusion.samplers.schedulers import (
    SchedulerSampler,
    make_scheduler,
)
from studio.errors import InputError, UsageError
from studio.messages import ProgressFn, warn

if TYPE_CHECKING:
    import torch

    from studio.diffusion.latent_tiling import Window
    from studio.diffusion.samplers import Sampler, StepCallback


@dataclass(frozen=True, kw_only=True)
class Request:
    """One call's parameters, already resolved from settings.

    strength: 1.0 starts from pure noise; below 1 starts from the image's latents noised to that point.
    control_scales: one scale (or schedule over t) per ControlNet; empty means 1.0 for each.
    """

    prompt: str
    negative_prompt: str = ""
    steps: int
    guidance: Scale
    seed: int
    scheduler: str | None = None
    strength: float = 1.0
    control_scales: tuple[Scale, ...] = ()
    unet_tile: int = 0  # latent pixels; 0: whole latent at once
    tile_overlap: int = 0
    vae_tile: int = 0  # latent pixels; 0: decode in one pass
    vae_pad: int = 16


@dataclass
class Components:
    """The diffusers modules a recipe runs (as found in a pipeline folder), plus optional ControlNets."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    unet: Any
    scheduler: Any
    controlnets: list[Any] = field(default_factory=list, kw_only=True)

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def modules(self) -> list[Any]:
        """Every torch module, for placement on the device."""
        return [self.text_encoder, self.unet, *self.controlnets, self.vae]

    def encoders(self) -> tuple[Any, ...]:
        """The text encoders: used once per image, so they need not stay on the device."""
        return (self.text_encoder,)


class Recipe:
    """Runs the pipeline steps on loaded components placed by a `Placement` (device and offload mode)."""

    def __init__(self, components: Components, placement: Placement, dtype: torch.dtype) -> None:
        import torch

        self.components = components
        self.placement = placement
        self.device = placement.device
        self.dtype = dtype
        if dtype == torch.float16 and getattr(components.vae.config, "force_upcast", False):
            components.vae.to(dtype=torch.float32)  # the VAE overflows in fp16 (diffusers' force_upcast rule)
        placement.prepare(components.modules(), components.encoders())

    def __call__(
        self,
        image: np.ndarray,
        request: Request,
        progress: ProgressFn | None = None,
        on_step: StepCallback | None = None,
    ) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1] -> the decoded image, (H, W) times the output/latent ratio."""
        import torch

        self.check_inputs(image, request)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        with torch.no_grad():
            cond, uncond = self.encode_prompt(request.prompt, request.negative_prompt, uses_negative(request.guidance))
            cond, uncond = self.prepare_conditioning(image, request, cond, uncond, generator)
            sampler = self.make_sampler(request, generator)
            latents = self.initial_latents(image, request, sampler, generator, cond["encoder_hidden_states"].dtype)
            with ExitStack() as stack:
                for module in (self.components.unet, *self.components.controlnets):
                    stack.enter_context(self.placement.using(module))
                denoiser = self.denoiser(request, cond, uncond, latents.shape[-2:])
                latents = self.denoise(sampler, denoiser, latents, progress, on_step)
            with self.placement.using(self.components.vae):
                result = self.decode(latents, request)
        if progress is not None:
            progress(sampler.steps + 1, sampler.steps + 1)
        return result

    # 1 -------------------------------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """What input sides must divide by (the VAE's downsampling)."""
        return self.components.vae_scale_factor

    def check_inputs(self, image: np.ndarray, request: Request) -> None:
        """Precise errors before any tensor work: name the value, what was given and what is expected."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image of shape {image.shape}: expected (height, width, 3) RGB")
        if not np.isfinite(image).all():
            raise InputError("image holds NaN or infinite values")
        multiple = self.size_multiple
        if image.shape[0] % multiple or image.shape[1] % multiple:
            raise InputError(f"image {image.shape[1]}x{image.shape[0]}: sides must be multiples of {multiple}")
        if request.seed is None:  # the runner draws one for every run (plan.finalize_seed) and records it
            raise UsageError("no seed: give --seed, or build the settings through studio.runner, which draws one")
        if request.steps < 1:
            raise UsageError(f"--steps {request.steps}: expected at least 1")
        if not callable(request.guidance) and request.guidance < 0:
            raise UsageError(f"--guidance {request.guidance}: expected 0 or more (1 or less turns guidance off)")
        if not 0 < request.strength <= 1:
            raise UsageError(f"--strength {request.strength}: expected above 0 and at most 1")
        if request.control_scales and len(request.control_scales) != len(self.components.controlnets):
            raise UsageError(
                f"{len(request.control_scales)} control scales for "
                f"{len(self.components.controlnets)} ControlNets: give one per ControlNet"
            )
        if request.unet_tile and request.tile_overlap >= request.unet_tile:
            raise UsageError(f"--tile-overlap {request.tile_overlap}: must be smaller than --tile {request.unet_tile}")

    # 2 -------------------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, negative: str, with_negative: bool) -> tuple[Conditioning, Conditioning]:
        """CLIP hidden states for the prompt and (when guidance is on) the negative prompt, as diffusers does."""
        tokenizer, encoder = self.components.tokenizer, self.components.text_encoder
        with self.placement.using(encoder):
            cond = self._encode(tokenizer, encoder, prompt, tokenizer.model_max_length, warn_truncation=True)
            uncond = self._encode(tokenizer, encoder, negative, cond.shape[1]) if with_negative else cond
        return Conditioning({"encoder_hidden_states": cond}), Conditioning({"encoder_hidden_states": uncond})

    def _encode(self, tokenizer: Any, encoder: Any, text: str, length: int, warn_truncation: bool = False) -> Any:
        tokens = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        if warn_truncation and len(tokenizer(text).input_ids) > length:
            warn(f"the prompt is longer than {length} tokens; CLIP ignores the rest")
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.device)
        hidden = encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return hidden.to(dtype=encoder.dtype, device=self.device)

    # 3 -------------------------------------------------------------------------------------------
    def prepare_conditioning(
        self,
        image: np.ndarray,
        request: Request,
        cond: Conditioning,
        uncond: Conditioning,
        generator: torch.Generator,
    ) -> tuple[Conditioning, Conditioning]:
        """Default: the image as every ControlNet's control image (`control_<i>`, pixel space, [0, 1]), kept in
        host memory until a tile reads it when the latent is tiled."""
        if not self.components.controlnets:
            return cond, uncond
        control = control_pixels(image, self.device, cond["encoder_hidden_states"].dtype, bool(request.unet_tile))
        factor = self.components.vae_scale_factor
        extra = {control_key(i): control for i in range(len(self.components.controlnets))}
        spatial = dict.fromkeys(extra, factor)
        return cond.with_tensors(extra, spatial), uncond.with_tensors(extra, spatial)

    # 4 -------------------------------------------------------------------------------------------
    def make_sampler(self, request: Request, generator: torch.Generator) -> Sampler:
        """The named diffusers scheduler (the model's own by default) on the model's beta schedule."""
        scheduler = make_scheduler(request.scheduler, self.components.scheduler)
        return SchedulerSampler(scheduler, request.steps, self.device, generator, request.strength)

    # 5 -------------------------------------------------------------------------------------------
    def latent_size(self, image: np.ndarray) -> tuple[int, int]:
        factor = self.components.vae_scale_factor
        return image.shape[0] // factor, image.shape[1] // factor

    def initial_latents(
        self, image: np.ndarray, request: Request, sampler: Sampler, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        """Noise (drawn after any image encoding, as diffusers' img2img does) shaped like the latent."""
        from diffusers.utils.torch_utils import randn_tensor

        image_latents = self.encode_image(image, request, generator, dtype) if request.strength < 1 else None
        shape = (1, self.components.vae.config.latent_channels, *self.latent_size(image))
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        return sampler.initial_latents(noise, image_latents)

    def encode_image(
        self, image: np.ndarray, request: Request, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        """The image's latents, sampled from the VAE posterior and scaled by the VAE's scaling factor; encoded
        in `vae_tile` tiles when set, so a large image never runs through the encoder whole."""
        vae = self.components.vae
        with self.placement.using(vae):
            pixels = HostPixels(image, self.device, vae.dtype, signed=True)
            latents = tiled_vae.encode(vae, pixels, request.vae_tile, request.vae_pad, generator)
        return (latents * vae.config.scaling_factor).to(dtype)

    # 6 -------------------------------------------------------------------------------------------
    def conditioned_model(self, request: Request) -> ConditionedModel:
        """The UNet, steered by the components' ControlNets when there are any."""
        if self.components.controlnets:
            scales = request.control_scales or (1.0,) * len(self.components.controlnets)
            return controlled_unet(self.components.unet, self.components.controlnets, scales)
        return plain_unet(self.components.unet)

    def denoiser(self, request: Request, cond: Conditioning, uncond: Conditioning, size: Any) -> Denoiser:
        """conditioned model -> classifier-free guidance -> latent tiling (when asked)."""
        denoiser = guided(self.conditioned_model(request), cond, uncond, request.guidance)
        if request.unet_tile:
            denoiser = tiled_denoiser(denoiser, *size, request.unet_tile, request.tile_overlap)
        return denoiser

    def denoise(
        self,
        sampler: Sampler,
        denoiser: Denoiser,
        latents: torch.Tensor,
        progress: ProgressFn | None,
        on_step: StepCallback | None,
    ) -> torch.Tensor:
        """The visible loop: the sampler's steps, with progress(done, total) and on_step after each."""
        total = sampler.steps + 1  # the last unit is decoding

        def after_step(index: int, current: torch.Tensor) -> None:
            if on_step is not None:
                on_step(index, current)
            if progress is not None:
                progress(index + 1, total)

        return sampler.sample(denoiser, latents, after_step)

    # 7 -------------------------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor, request: Request) -> np.ndarray:
        """Latents (cast to the VAE's dtype) / scaling factor -> image, tiled when `vae_tile` > 0."""
        vae = self.components.vae
        weight_dtype = next(iter(vae.post_quant_conv.parameters())).dtype if vae.post_quant_conv else vae.dtype
        scaled = latents.to(weight_dtype) / vae.config.scaling_factor
        return tiled_vae.decode(vae, scaled, request.vae_tile, request.vae_pad)


def plain_unet(unet: Any) -> ConditionedModel:
    """A diffusers UNet as a conditioned model (text, class labels and SDXL conditions by name)."""

    def model(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, window: Window | None) -> torch.Tensor:
        return unet(x, t, **unet_kwargs(cond.crop(window)), return_dict=False)[0]

    return model
