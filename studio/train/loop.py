"""The training loop: accelerate for devices and mixed precision, Real-ESRGAN's losses, EMA, checkpoints.

One step is one optimiser update of the generator (and of the discriminator when the GAN is on), over
`accumulate` micro-batches. Validation scores the EMA generator on fixed held-out pairs, and the starting
weights once at step 0, so the log shows what fine-tuning changed.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.io import write_text_atomic
from studio.lab.evaluate import lpips_or_reason, score
from studio.messages import notice
from studio.train import data, losses, state
from studio.version import __version__


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes the result; a checkpoint from other values (but `steps`) is refused on --resume."""

    base: str
    profile: str = "realesrgan"
    steps: int = 50_000
    gt_size: int = 256
    batch: int = 8
    accumulate: int = 1
    lr: float = 1e-4
    gan: bool = True
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    disc_features: int = 64

    def fingerprint(self, base_sha256: str, sources: list[data.Source]) -> dict[str, Any]:
        shaping = {key: value for key, value in asdict(self).items() if key != "steps"}  # resume may go further
        return {**shaping, "base_sha256": base_sha256, "data": data.folder_fingerprint(sources)}


@dataclass
class Log:
    """The JSON log beside the result: options, the starting model's scores, validations and losses."""

    options: dict[str, Any]
    start: dict[str, Any] = field(default_factory=dict)
    validations: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)


def _tensor(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy()).to(device)


class Trainer:
    """One fine-tuning run of `model` (a spandrel network) on `sources`."""

    def __init__(
        self,
        model: torch.nn.Module,
        scale: int,
        options: TrainOptions,
        sources: list[data.Source],
        validation: list[tuple[str, data.Sample]],
        perceptual: losses.PerceptualLoss | None,
        device: str = "auto",
        mixed_precision: str = "no",
    ) -> None:
        from accelerate import Accelerator

        self.options, self.scale, self.sources, self.validation = options, scale, sources, validation
        self.accelerator = Accelerator(
            cpu=device == "cpu", mixed_precision=mixed_precision, gradient_accumulation_steps=options.accumulate
        )
        torch.manual_seed(options.seed)  # the discriminator's initial weights and spectral-norm vectors
        self.ema = copy.deepcopy(model).eval().requires_grad_(False).to(self.accelerator.device)
        self.start_model = copy.deepcopy(self.ema)
        adam = {"lr": options.lr, "betas": (0.9, 0.99)}
        self.model, self.opt_g = self.accelerator.prepare(model.train(), torch.optim.Adam(model.parameters(), **adam))
        self.disc = self.opt_d = None
        if options.gan:
            disc = losses.UNetDiscriminator(features=options.disc_features)
            self.disc, self.opt_d = self.accelerator.prepare(disc, torch.optim.Adam(disc.parameters(), **adam))
        self.perceptual = perceptual.to(self.accelerator.device) if perceptual is not None else None
        self.step = 0

    # ---------------------------------------------------------------------------------------- states

    def parts(self) -> dict[str, Any]:
        unwrap = self.accelerator.unwrap_model
        parts = {
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
        }
        if self.disc is not None:
            parts |= {"disc": unwrap(self.disc).state_dict(), "opt_d": self.opt_d.state_dict()}
        return parts

    def restore(self, saved: dict[str, Any]) -> None:
        unwrap = self.accelerator.unwrap_model
        unwrap(self.model).load_state_dict(saved["model"])
        self.ema.load_state_dict(saved["ema"])
        self.opt_g.load_state_dict(saved["opt_g"])
        if self.disc is not None:
            unwrap(self.disc).load_state_dict(saved["disc"])
            self.opt_d.load_state_dict(saved["opt_d"])
        self.step = int(saved["step"])

    # ---------------------------------------------------------------------------------------- one step

    def train_step(self) -> dict[str, float]:
        """One optimiser update over `accumulate` micro-batches; the mean of each loss term."""
        o, device = self.options, self.accelerator.device
        totals: dict[str, float] = {}
        for micro in range(o.accumulate):
            samples = data.batch(
                self.sources, o.batch, o.gt_size, self.scale, o.profile, o.seed,
                self.step, micro, self.accelerator.process_index,
            )  # fmt: skip
            lq, gt = _tensor([s.lq for s in samples], device), _tensor([s.hq for s in samples], device)
            with self.accelerator.accumulate(self.model, *([self.disc] if self.disc is not None else [])):
                terms = self._generator_update(lq, gt)
                result = terms.pop("_result")
                if self.disc is not None:
                    terms |= self._discriminator_update(result, gt)
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) / o.accumulate
        state.update_ema(self.ema, self.accelerator.unwrap_model(self.model), o.ema_decay)
        self.step += 1
        return totals

    def _generator_update(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, Any]:
        o = self.options
        with self.accelerator.autocast():
            result = self.model(lq)
            terms = {"l1": F.l1_loss(result, gt) * o.pixel_weight}
            if self.perceptual is not None and o.perceptual_weight > 0:
                terms["perceptual"] = self.perceptual(result.float(), gt) * o.perceptual_weight
            if self.disc is not None:
                self.disc.requires_grad_(False)
                terms["gan"] = losses.gan_loss(self.disc(result), real=True) * o.gan_weight
        self.accelerator.backward(sum(terms.values()))
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        return {**{k: v.detach() for k, v in terms.items()}, "_result": result.detach()}

    def _discriminator_update(self, result: torch.Tensor, gt: torch.Tensor) -> dict[str, Any]:
        self.disc.requires_grad_(True)
        with self.accelerator.autocast():
            real, fake = losses.gan_loss(self.disc(gt), real=True), losses.gan_loss(self.disc(result), real=False)
        self.accelerator.backward(real + fake)
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        return {"d_real": real.detach(), "d_fake": fake.detach()}

    # ---------------------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, lpips_fn: Callable | None) -> dict[str, Any]:
        """Mean PSNR-Y, SSIM-Y (and LPIPS when its backbone is present) of `model` on the held-out pairs."""
        scores = []
        for _, sample in self.validation:
            lq = _tensor([sample.lq], self.accelerator.device)
            result = model(lq).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            scores.append(score(result, sample.hq, self.scale, lpips_fn))
        mean = {key: float(np.mean([s[key] for s in scores])) for key in ("psnr_y", "ssim_y")}
        if lpips_fn is not None:
            mean["lpips"] = float(np.mean([s["lpips"] for s in scores]))
        return {key: round(value, 4) for key, value in mean.items()}


@dataclass
class Schedule:
    """When to validate and checkpoint, and where the run writes."""

    output: Path
    val_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 10


def run(
    trainer: Trainer,
    schedule: Schedule,
    fingerprint: dict[str, Any],
    provenance: dict[str, Any],
    arch: str,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> Log:
    """Train to the last step with checkpoints and validation; Ctrl-C saves a checkpoint first."""
    o = trainer.options
    lpips_fn, lpips_note = lpips_or_reason(str(trainer.accelerator.device))
    log_path = schedule.output.with_name(schedule.output.stem + ".train.json")
    log = _read_log(log_path, fingerprint, trainer.step) if trainer.step else Log(options=fingerprint)
    if not log.start:
        log.start = trainer.validate(trainer.start_model, lpips_fn) | ({"lpips_note": lpips_note} if lpips_note else {})
    started, first = time.perf_counter(), trainer.step
    try:
        while trainer.step < o.steps:
            terms = trainer.train_step()
            step = trainer.step
            if step % schedule.log_every == 0 or step == o.steps:
                log.losses.append({"step": step, **{k: round(v, 5) for k, v in terms.items()}})
            if step % schedule.val_every == 0 or step == o.steps:
                log.validations.append({"step": step, **trainer.validate(trainer.ema, lpips_fn)})
            if step % schedule.checkpoint_every == 0 or step == o.steps:
                _save(trainer, schedule.output, fingerprint, log, log_path)
            if on_step:
                on_step(step, terms)
    except KeyboardInterrupt:
        if trainer.step > first and (saved := _save(trainer, schedule.output, fingerprint, log, log_path)):
            notice(f"interrupted at step {trainer.step}; checkpoint {saved}; rerun the command with --resume")
        raise
    final = {**provenance, "steps": o.steps, "seconds": round(time.perf_counter() - started, 1)}
    final |= {"final_losses": log.losses[-1] if log.losses else {}, "start": log.start}
    final |= {"final_validation": log.validations[-1] if log.validations else {}, "studio_version": __version__}
    if trainer.accelerator.is_main_process:
        state.export(trainer.ema, schedule.output, arch, trainer.scale, final)
        write_text_atomic(log_path, json.dumps(asdict(log), indent=2))
    return log


def _save(trainer: Trainer, output: Path, fingerprint: dict[str, Any], log: Log, log_path: Path) -> Path | None:
    """Checkpoint and log, written by the main process only (the others hold the same states)."""
    if not trainer.accelerator.is_main_process:
        return None
    saved = state.save_checkpoint(output, trainer.step, trainer.parts(), fingerprint)
    write_text_atomic(log_path, json.dumps(asdict(log), indent=2))
    return saved


def _read_log(path: Path, fingerprint: dict[str, Any], step: int) -> Log:
    """The log of the run being resumed, up to the checkpoint's step."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return Log(options=fingerprint)

    def upto(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [entry for entry in entries if entry.get("step", 0) <= step]

    start = saved.get("start", {})
    return Log(fingerprint, start, upto(saved.get("validations", [])), upto(saved.get("losses", [])))
