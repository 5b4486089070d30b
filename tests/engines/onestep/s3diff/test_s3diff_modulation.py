"""The degradation-guided LoRA on tiny random models: M folded into A equals the authors' r x r insertion after
A, merging into the base weights changes nothing, a new image's matrices start from the exact trained
weights, and the degradation scores really steer the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from studio.diffusion.loading import resolve_source
from studio.engines.onestep.s3diff import SPEC
from studio.engines.onestep.s3diff.model import S3DiffModel


@pytest.fixture(scope="module")
def models(tiny_s3diff: tuple[Path, Path, Path]) -> tuple[S3DiffModel, S3DiffModel]:
    """(unfused, fused) S3Diff on the tiny base (random weights) in float64, so that comparisons of forms
    that only reorder sums measure the algebra, not float32 rounding through a random network."""
    base, weights, _ = tiny_s3diff
    source = resolve_source(str(base))
    return SPEC.load(source, str(weights), torch.float64, False), SPEC.load(source, str(weights), torch.float64, True)


def outputs(model: S3DiffModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's prediction and the VAE encoder's moments on fixed inputs."""
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    context = torch.randn(1, 77, 32, generator=generator, dtype=torch.float64)
    pixels = torch.rand(1, 3, 64, 64, generator=generator, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        unet = model.components.unet(latents, torch.tensor([999]), context).sample
        moments = model.components.vae.encode(pixels).latent_dist.mean
    return unet, moments


def matrices(model: S3DiffModel, blur: float, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        unet, vae = model.guidance(torch.tensor([[blur, noise]]))
    return unet[0], vae[0]


def test_matrix_folded_into_a_equals_the_inserted_form(models: tuple[S3DiffModel, S3DiffModel]) -> None:
    model = models[0]
    unet_m, vae_m = matrices(model, 0.3, 0.7)
    model.modulate(unet_m, vae_m)
    folded = outputs(model)
    with model.unet_lora.insert(unet_m), model.vae_lora.insert(vae_m):
        inserted = outputs(model)
    for a, b in zip(folded, inserted):
        assert (a - b).abs().max() < 1e-10 * max(1.0, float(b.abs().max()))


def test_merged_lora_equals_unmerged_and_restarts_exactly(models: tuple[S3DiffModel, S3DiffModel]) -> None:
    unfused, fused = models
    first = matrices(unfused, 0.2, 0.9)
    unfused.modulate(*first)
    fused.modulate(*first)
    expected = outputs(unfused)
    merged = outputs(fused)
    assert all(layer.merged for _, layer, _ in fused.unet_lora.layers)
    for a, b in zip(expected, merged):
        assert (a - b).abs().max() < 1e-10 * max(1.0, float(a.abs().max()))
    fused.modulate(*matrices(fused, 0.8, 0.1))
    fused.modulate(*first)  # back to the first image's matrices: from the stored base weights, no drift
    for a, b in zip(merged, outputs(fused)):
        assert torch.equal(a, b)


def test_degradation_scores_steer_the_output(models: tuple[S3DiffModel, S3DiffModel]) -> None:
    model = models[0]
    model.modulate(*matrices(model, 0.05, 0.05))
    light = outputs(model)
    model.modulate(*matrices(model, 0.95, 0.95))
    heavy = outputs(model)
    for a, b in zip(light, heavy):
        assert (a - b).abs().mean() > 1e-3 * float(a.abs().mean())
    image = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    model.prepare(image)
    assert len(model.scores) == 2 and all(0.0 <= s <= 1.0 for s in model.scores)
    assert model.describe()["degradation_scores"].keys() == {"blur", "noise"}


@pytest.mark.slow
def test_modulation_reaches_layers_offloaded_one_by_one(
    tiny_s3diff: tuple[Path, Path, Path], models: tuple[S3DiffModel, S3DiffModel]
) -> None:
    """With accelerate's sequential offload (CPU as execution device) the weights are placeholders on the
    meta device; the folded A must land in accelerate's copy, giving the same outputs as without offload."""
    from studio.diffusion.offload import Placement

    base, weights, _ = tiny_s3diff
    offloaded = SPEC.load(resolve_source(str(base)), str(weights), torch.float64, False)
    Placement("sequential", torch.device("cpu"), even_on_cpu=True).prepare(
        [offloaded.components.unet, offloaded.components.vae]
    )
    reference = models[0]
    for model in (reference, offloaded):
        model.modulate(*matrices(reference, 0.4, 0.6))
    for a, b in zip(outputs(reference), outputs(offloaded)):
        assert torch.equal(a, b)
