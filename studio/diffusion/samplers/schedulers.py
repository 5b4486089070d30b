"""Sampler names users type -> diffusers scheduler classes, built from the model's own scheduler config.

Building from the model's config keeps its beta schedule and prediction type (the x4 upscaler
predicts v), so only the integration method changes.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from studio.errors import UsageError

if TYPE_CHECKING:
    import torch

    from studio.diffusion.guidance import Denoiser
    from studio.diffusion.samplers import StepCallback

SCHEDULER_CLASSES: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpm++-karras": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}
_EXTRA_CONFIG: dict[str, dict[str, Any]] = {"dpm++-karras": {"use_karras_sigmas": True}}


def check_scheduler_name(name: str | None) -> None:
    """Reject an unknown --scheduler before anything heavy is loaded."""
    if name is not None and name not in SCHEDULER_CLASSES:
        raise UsageError(f"--scheduler {name!r}: unknown; expected one of {', '.join(SCHEDULER_CLASSES)}")


def make_scheduler(name: str | None, model_scheduler: Any) -> Any:
    """A fresh scheduler: the model's own class when `name` is None, else the named one on its config."""
    import diffusers

    check_scheduler_name(name)
    if name is None:
        return type(model_scheduler).from_config(model_scheduler.config)
    cls = getattr(diffusers, SCHEDULER_CLASSES[name])
    return cls.from_config(model_scheduler.config, **_EXTRA_CONFIG.get(name, {}))


def scheduler_label(name: str | None, scheduler: Any) -> str:
    """What provenance records: the user's name, or the model's default class."""
    return name if name is not None else f"default ({type(scheduler).__name__})"


def start_index(steps: int, strength: float) -> int:
    """How many of `steps` an img2img run at `strength` skips (diffusers' rule: int(steps * strength) run)."""
    return steps - min(int(steps * strength), steps)


class SchedulerSampler:
    """A diffusers scheduler as a `Sampler`: scale the input, predict, step, as diffusers' pipelines loop.

    With strength < 1 the loop starts part-way (img2img): the image latents are noised to the first
    remaining timestep and only the later steps run.
    """

    def __init__(
        self, scheduler: Any, steps: int, device: torch.device, generator: torch.Generator, strength: float = 1.0
    ) -> None:
        scheduler.set_timesteps(steps, device=device)
        skip = start_index(steps, strength) * scheduler.order
        if skip and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skip)
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps[skip:]
        self.step_kwargs = _step_kwargs(scheduler, generator)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def initial_latents(self, noise: torch.Tensor, image_latents: torch.Tensor | None = None) -> torch.Tensor:
        if image_latents is None:
            return noise * self.scheduler.init_noise_sigma
        return self.scheduler.add_noise(image_latents, noise, self.timesteps[:1])

    def sample(self, denoiser: Denoiser, latents: torch.Tensor, on_step: StepCallback) -> torch.Tensor:
        scheduler = self.scheduler
        for index, t in enumerate(self.timesteps):
            prediction = denoiser(scheduler.scale_model_input(latents, t), t, None)
            latents = scheduler.step(prediction, t, latents, **self.step_kwargs, return_dict=False)[0]
            on_step(index, latents)
        return latents


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    """eta=0 and the generator for schedulers that take them (DDIM, DDPM, ancestral), as diffusers passes."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
