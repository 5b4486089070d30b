"""The stablesr engine end to end on tiny random components saved as users' files (no network)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from support.stablesr_tiny import write_base, write_controlnet_base, write_official_files

from studio.diffusion.latent_tiling import unet_work
from studio.engines.stablesr.engine import StableSREngine, default_tiling, fidelity_knobs
from studio.errors import UsageError
from studio.settings import Settings, apply_layer


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stablesr")
    adapter, cfw = write_official_files(root / "official")
    base, controlnet = write_controlnet_base(root / "permissive")
    return {"base": write_base(root / "sd2"), "adapter": adapter, "cfw": cfw, "sd15": base, "controlnet": controlnet}


def image(size: tuple[int, int] = (32, 32), seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.random((size[0] // 8, size[1] // 8, 3), dtype=np.float32)
    return np.kron(low, np.ones((8, 8, 1), np.float32))


def engine(**values: object) -> StableSREngine:
    base = {"engine": "stablesr", "steps": 2, "guidance": 1.0, "seed": 3, "stage1": "lanczos", "tile": 0}
    return StableSREngine(apply_layer(Settings(), {**base, **values}, "cli"))


def test_permissive_variant_equals_diffusers_controlnet_img2img(files: dict[str, Path]) -> None:
    from diffusers import (
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetImg2ImgPipeline,
    )

    ours = (
        engine(
            model=str(files["sd15"]),
            adapter=str(files["controlnet"]),
            stage1="none",
            denoise=1.0,
            pull=0.0,
            adapter_scale=1.0,
            scheduler="ddim",
            guidance=5.0,
            prompt="a cat",
            negative_prompt="blur",
            steps=3,
            seed=11,
        )
        .restore(image((64, 64)), 1.0)
        .image
    )
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        files["sd15"],
        controlnet=ControlNetModel.from_pretrained(files["controlnet"]),
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pixels = torch.from_numpy(image((64, 64)).transpose(2, 0, 1).copy())[None]
    theirs = pipe(
        prompt="a cat",
        negative_prompt="blur",
        image=pixels,
        control_image=pixels,
        strength=1.0,
        controlnet_conditioning_scale=1.0,
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
    ).images[0]
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).max() < 1e-6


def test_official_layout_files_run_reproducibly_and_every_knob_moves_the_output(files: dict[str, Path]) -> None:
    adapters = f"{files['adapter']},{files['cfw']}"
    first = engine(model=str(files["base"]), adapter=adapters)
    result = first.restore(image(), 1.0)
    out = result.image
    assert out.shape == (32, 32, 3) and np.isfinite(out).all()
    info = result.provenance
    assert info["variant"] == "stablesr" and info["cfw"] == 0.5 and info["resolved_from"]["cfw"] == "default"
    assert [a["layout"] for a in info["adapters"]] == ["adapter", "cfw"]
    assert np.array_equal(out, engine(model=str(files["base"]), adapter=adapters).restore(image(), 1.0).image)
    for knob in ({"seed": 4}, {"cfw": 1.0}, {"adapter_scale": 0.0}, {"pull": 0.5}, {"denoise": 0.5}):
        other = engine(model=str(files["base"]), adapter=adapters, **knob).restore(image(), 1.0).image
        assert np.abs(other - out).mean() > 1e-4, knob


def test_sizes_for_2x_4x_and_fractional_scales(files: dict[str, Path]) -> None:
    run = engine(model=str(files["base"]), adapter=str(files["adapter"]), steps=1)
    for scale, expected in ((2.0, (34, 26)), (4.0, (68, 52)), (1.5, (26, 20))):
        picture = np.random.default_rng(0).random((17, 13, 3), dtype=np.float32)
        assert run.restore(picture, scale).image.shape == (*expected, 3)


def test_tiled_sampling_agrees_with_untiled(files: dict[str, Path]) -> None:
    """Aggregation sampling (Gaussian-blended tiles, one scheduler step on the whole latent)."""
    picture = image((128, 96))
    untiled = engine(model=str(files["base"]), adapter=str(files["adapter"])).restore(picture, 1.0).image
    tiled_run = engine(model=str(files["base"]), adapter=str(files["adapter"]), tile=64, tile_overlap=32)
    tiled_result = tiled_run.restore(picture, 1.0)
    tiled = tiled_result.image
    assert tiled_result.provenance["tile"] == 64 and tiled_result.provenance["tile_overlap"] == 32  # as given
    assert tiled_result.provenance["latent_tile"] == 8
    other_seed = engine(model=str(files["base"]), adapter=str(files["adapter"]), seed=4).restore(picture, 1.0).image
    # tiles change the result far less than a new seed does (toy 8-latent-px tiles: the worst case)
    assert np.abs(tiled - untiled).mean() < 0.5 * np.abs(other_seed - untiled).mean()


def test_cfw_decodes_in_tiles_when_the_vae_is_tiled(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """CFW used to force a whole-image decode; with the VAE tiled, the engine's CFW decode goes through the
    tiled fused decode (its quality is tested on the photo VAE in test_diffusion_tiling.py: this tiny random
    VAE decodes almost any latent to the same flat grey)."""
    import studio.engines.stablesr.engine as stablesr
    from studio.diffusion import tiled_vae

    adapters = f"{files['adapter']},{files['cfw']}"
    picture = image((128, 96))
    whole = engine(model=str(files["base"]), adapter=adapters, cfw=0.3).restore(picture, 1.0).image
    tiles: list[int] = []
    fused = tiled_vae.decode_fused

    def recording(*args: object, **kwargs: object) -> np.ndarray:
        tiles.append(int(args[4]))
        return fused(*args, **kwargs)

    monkeypatch.setattr(tiled_vae, "decode_fused", recording)
    monkeypatch.setattr(stablesr, "VAE_TILE", 8)
    monkeypatch.setattr(stablesr, "free_memory_bytes", lambda device: 1)
    tiled_run = engine(model=str(files["base"]), adapter=adapters, cfw=0.3, tile=1024)  # latent untiled
    tiled_result = tiled_run.restore(picture, 1.0)
    tiled = tiled_result.image
    assert tiles == [8] and tiled_result.provenance["vae_tile"] == 8 and tiled_result.provenance["cfw"] == 0.3
    np.testing.assert_allclose(tiled, whole, atol=0.02)


@pytest.mark.parametrize("output", [(1080, 1920), (1032, 1032), (2048, 2048), (2000, 3000), (4096, 4096)])
def test_default_tiling_keeps_unet_work_within_the_target(output: tuple[int, int]) -> None:
    """<= 1.3x the no-overlap minimum at the default tiling (it was 1.38x at 3000x2000, 1.37x at 4096^2 and
    1.54x at 1032^2 while every window was rounded up to a multiple of 8)."""
    latent = (output[0] // 8, output[1] // 8)
    tile, overlap, _ = default_tiling(Settings(), latent, 8, 64, 1 << 40)
    assert (tile, overlap) == (128, 16)
    assert unet_work(*latent, tile, overlap) <= 1.3 * latent[0] * latent[1]


def test_fidelity_mapping_and_raw_flags_beating_it() -> None:
    settings = apply_layer(Settings(), {"fidelity": 0.5, "pull": 0.1}, "cli")
    knobs = fidelity_knobs(settings, has_cfw=True)
    assert knobs["cfw"] == (0.5, "fidelity 0.5") and knobs["denoise"] == (0.75, "fidelity 0.5")
    assert knobs["pull"] == (0.1, "cli") and knobs["adapter_scale"] == (1.0, "fidelity 0.5")
    assert fidelity_knobs(dataclasses.replace(settings, fidelity=None), has_cfw=False)["cfw"] == (0.0, "default")


def test_bad_inputs_are_one_line_errors(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs the CFW weights"):
        engine(model=str(files["base"]), adapter=str(files["adapter"]), cfw=0.5).restore(image(), 1.0)
    with pytest.raises(UsageError, match="--stage1 none: the input must already have the output size"):
        engine(model=str(files["base"]), adapter=str(files["adapter"]), stage1="none").restore(image(), 2.0)
    with pytest.raises(UsageError, match="--denoise 0.4 with --steps 2 runs no step"):
        engine(model=str(files["base"]), adapter=str(files["adapter"]), denoise=0.4).restore(image(), 1.0)
    with pytest.raises(UsageError, match="a base model needs --adapter"):
        engine(model=str(files["base"]))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read .*broken.ckpt"):
        engine(model=str(files["base"]), adapter=str(broken)).restore(image(), 1.0)


def test_cli_runs_and_records_the_resolved_knobs(files: dict[str, Path], photo: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from studio.cli import app

    out = tmp_path / "out.png"
    args = [
        "restore",
        str(photo),
        "--engine",
        "stablesr",
        "--model",
        str(files["base"]),
        "--adapter",
        str(files["adapter"]),
        "--stage1",
        "lanczos",
        "--steps",
        "2",
        "--scale",
        "0.5",
        "--tile",
        "0",
        "--seed",
        "7",
        "--fidelity",
        "0.4",
        "--denoise",
        "0.9",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    details = json.loads(CliRunner().invoke(app, ["info", str(out), "--json"]).stdout)["engine_details"]
    assert details["pull"] == 0.4 and details["resolved_from"]["pull"] == "fidelity 0.4"
    assert details["denoise"] == 0.9 and details["resolved_from"]["denoise"] == "cli"
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    bad = CliRunner().invoke(app, [*args[:7], str(broken), *args[8:], "--overwrite"], catch_exceptions=False)
    assert bad.exit_code == 2 and "cannot read" in bad.stderr and "Traceback" not in bad.output


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_pull_moves_the_implied_clean_latent_by_exactly_its_amount(prediction_type: str) -> None:
    from diffusers import DDIMScheduler

    from studio.engines.stablesr.recipe import pulled

    alphas = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    generator = torch.Generator().manual_seed(0)
    x, pred, target = (torch.randn(1, 4, 6, 6, generator=generator) for _ in range(3))
    t = torch.tensor(600)
    sa, sb = alphas[600].sqrt(), (1 - alphas[600]).sqrt()

    def x0_of(prediction: torch.Tensor) -> torch.Tensor:
        return sa * x - sb * prediction if prediction_type == "v_prediction" else (x - sb * prediction) / sa

    out = pulled(lambda *_: pred, target, 0.3, alphas, prediction_type)(x, t, None)
    torch.testing.assert_close(x0_of(out), x0_of(pred) + 0.3 * (target - x0_of(pred)), atol=1e-5, rtol=1e-5)


def test_stage1_fast_runs_the_fast_engine_to_the_output_size(files: dict[str, Path], astronaut: np.ndarray) -> None:
    from studio.ops.resize import resize

    picture = resize(astronaut[100:164, 200:264].astype(np.float32) / 255.0, 16, 16, "area")
    from studio.runner import EngineCache
    from studio.settings import Settings

    settings = Settings(engine="stablesr", model=str(files["base"]), adapter=str(files["adapter"]), stage1="fast")
    cache = EngineCache(settings, "stablesr")
    run = cache.get("stablesr")
    stage1, mode = run.stage1(picture, 2.0, cache.context(run))  # the runner lends it the fast engine
    assert mode == "fast" and stage1.shape == (32, 32, 3)
    assert np.abs(stage1 - resize(picture, 32, 32, "lanczos")).mean() > 1e-3  # Real-ESRGAN, not a resize
