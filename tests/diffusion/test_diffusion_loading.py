"""Loading diffusion weights through the real loader (tiny random components saved with save_pretrained):
fp16-only stores count as present, dtype is honoured, broken files are not 'missing', ControlNets and
extra weights files load; and bf16 runs of the tiny pipelines on CPU (dtype mismatches a GPU would show)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.devices import compute_dtype
from studio.diffusion import loading
from studio.diffusion.offload import Placement
from studio.diffusion.recipe import Recipe, Request
from studio.engines.sd_x4.pipeline import (
    UpscaleComponents,
    UpscalePipeline,
    UpscaleRequest,
)
from studio.errors import ModelLoadError, WeightsMissing
from studio.testing.tiny_sd import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_components,
    build_sd_components,
    save_as_diffusers_folder,
)

CPU = Placement("none", torch.device("cpu"))


@pytest.fixture(scope="module")
def fp16_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD x4 folder holding only the fp16 variant files (as `save_pretrained(variant='fp16')` writes)."""
    from diffusers import StableDiffusionUpscalePipeline

    folder = tmp_path_factory.mktemp("tiny-x4-fp16")
    save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), folder)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(folder)
    shutil.rmtree(folder)
    pipe.save_pretrained(folder, variant="fp16")
    return folder


def load_x4(folder: Path, dtype: torch.dtype) -> UpscaleComponents:
    from diffusers import StableDiffusionUpscalePipeline

    source = loading.resolve_source(str(folder))
    return UpscaleComponents.from_pipeline(
        loading.load_pipeline(StableDiffusionUpscalePipeline, source, "sd-x4", dtype)
    )


def test_fp16_only_folder_counts_as_present_and_loads_in_the_asked_dtype(fp16_folder: Path) -> None:
    assert not list(fp16_folder.glob("unet/diffusion_pytorch_model.safetensors"))
    source = loading.resolve_source(str(fp16_folder))
    assert loading.missing_reason(source, "sd-x4") is None
    assert loading.stored_variant(source) == "fp16"
    components = load_x4(fp16_folder, torch.bfloat16)
    assert components.unet.dtype == torch.bfloat16 and components.text_encoder.dtype == torch.bfloat16


def test_fp16_only_hub_cache_counts_as_present(fp16_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """A Hugging Face cache snapshot holding only fp16 files (e.g. filled by diffusers with variant='fp16')."""
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--studio-tests--tiny-x4" / "snapshots" / ("a" * 40)
    shutil.copytree(fp16_folder, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    source = loading.resolve_source("studio-tests/tiny-x4")
    assert loading.missing_reason(source, "sd-x4") is None
    assert loading.stored_variant(source) == "fp16"
    assert loading.snapshot_revision(source) == "a" * 40


def test_broken_weights_are_a_load_error_with_the_cause_not_missing_weights(fp16_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp16_folder, broken)
    weights = next(broken.glob("unet/diffusion_pytorch_model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="broken") as caught:
        load_x4(broken, torch.float32)
    assert caught.value.__cause__ is not None
    weights.unlink()
    with pytest.raises(WeightsMissing, match="not the weights"):
        load_x4(broken, torch.float32)


def test_sharded_weights_count_as_present_and_load(fp16_folder: Path, tmp_path: Path) -> None:
    """save_pretrained shards models over its 10 GB limit (SDXL's UNet in fp32) behind an index file; such a
    folder was taken for one without weights (found by benchmarks/bench_supir.py's fp32 run)."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(fp16_folder, variant="fp16")
    pipe.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert list((tmp_path / "sharded" / "unet").glob("diffusion_pytorch_model-*-of-*.safetensors"))
    source = loading.resolve_source(str(tmp_path / "sharded"))
    assert loading.missing_reason(source, "sd-x4") is None and loading.stored_variant(source) is None
    unet = load_x4(tmp_path / "sharded", torch.float32).unet
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(unet.state_dict()[name], value), name


def test_controlnet_loads_from_a_folder_in_the_asked_dtype(tmp_path: Path) -> None:
    from diffusers import ControlNetModel

    build_sd_components(controlnets=1).controlnets[0].save_pretrained(tmp_path / "cn")
    source = loading.resolve_source(str(tmp_path / "cn"))
    net = loading.load_model(ControlNetModel, source, "controlnet-tile", torch.bfloat16)
    assert isinstance(net, ControlNetModel) and net.dtype == torch.bfloat16
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsMissing, match="config.json"):
        loading.load_model(ControlNetModel, loading.resolve_source(str(tmp_path / "empty")), "x", torch.float32)


def test_extra_weights_files_load_as_state_dicts_and_bad_ones_say_why(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {"spade.weight": torch.arange(4.0)}
    save_file(state, tmp_path / "extra.safetensors")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "extra.ckpt")
    for name in ("extra.safetensors", "extra.ckpt"):
        assert torch.equal(loading.load_weights_file(tmp_path / name, "x")["spade.weight"], state["spade.weight"])
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="bad.ckpt") as caught:
        loading.load_weights_file(tmp_path / "bad.ckpt", "x")
    assert caught.value.__cause__ is not None
    with pytest.raises(WeightsMissing):
        loading.load_weights_file(tmp_path / "absent.safetensors", "x")


def test_weights_pull_downloads_only_what_the_pipeline_needs() -> None:
    from huggingface_hub.utils import filter_repo_objects

    from studio.weights import diffusers_allow_patterns

    listing = [
        "model_index.json",
        "x4-upscaler-ema.ckpt",
        "README.md",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder/pytorch_model.bin",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
    ]
    full = set(filter_repo_objects(listing, allow_patterns=diffusers_allow_patterns()))
    assert full == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
    }
    half = set(filter_repo_objects(listing, allow_patterns=diffusers_allow_patterns("fp16")))
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in half
    assert "unet/diffusion_pytorch_model.safetensors" not in half


def test_bf16_is_chosen_only_where_the_chosen_gpu_has_it_natively(monkeypatch) -> None:
    asked: list[object] = []

    def capability(device):
        asked.append(device)
        return (8, 6) if device.index == 1 else (7, 5)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    assert compute_dtype(torch.device("cuda:1")) == torch.bfloat16
    assert compute_dtype(torch.device("cuda:0")) == torch.float16
    assert [d.index for d in asked] == [1, 0]
    assert compute_dtype(torch.device("cpu")) == torch.float32


def test_tiny_sd_x4_runs_in_bfloat16_on_cpu_tiled(fp16_folder: Path) -> None:
    image = np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)
    request = UpscaleRequest(
        prompt="a cat",
        steps=2,
        guidance=4.0,
        seed=1,
        noise_level=20,
        unet_tile=16,
        tile_overlap=8,
        vae_tile=16,
        vae_pad=4,
    )
    half = UpscalePipeline(load_x4(fp16_folder, torch.bfloat16), CPU, torch.bfloat16)(image, request)
    full = UpscalePipeline(load_x4(fp16_folder, torch.float32), CPU, torch.float32)(image, request)
    assert half.shape == full.shape == (96, 96, 3) and half.dtype == np.float32 and np.isfinite(half).all()
    assert np.abs(half - full).mean() < 0.05  # same model, bf16 rounding only


def test_tiny_controlnet_recipe_and_edm_sampler_run_in_bfloat16_on_cpu() -> None:
    from studio.diffusion.samplers.edm import Churn, EDMSampler

    components = build_sd_components(controlnets=1)
    for module in components.modules():
        module.to(torch.bfloat16)

    class EDMRecipe(Recipe):
        def make_sampler(self, request, generator):
            return EDMSampler(self.components.scheduler, request.steps, generator, request.strength, Churn(s_churn=2.0))

    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    request = Request(prompt="a cat", steps=2, guidance=3.0, seed=0, strength=0.6, unet_tile=2, tile_overlap=1)
    for recipe_cls in (Recipe, EDMRecipe):
        out = recipe_cls(components, CPU, torch.bfloat16)(image, request)
        assert out.shape == (32, 32, 3) and np.isfinite(out).all()
