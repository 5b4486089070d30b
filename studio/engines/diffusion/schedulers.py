"""Sampler names users type -> diffusers scheduler classes, built from the model's own scheduler config.

Building from the model's config keeps its beta schedule and prediction type (the x4 upscaler
predicts v), so only the integration method changes.
"""

from __future__ import annotations

from typing import Any

from studio.errors import UsageError

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
