"""A full official StableSR file (it holds SD 2.1's UNet, VAE and text tower) runs on its own: no SD folder.

The file here is a toy-width random checkpoint in the official layout (tests/support/stablesr_tiny.py); the
shipped SD 2.1 configs are swapped for its toy configs, everything else is the path users run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from support import FIXTURES
from support.stablesr_tiny import TINY_TEXT, tiny_module_configs, write_full_file

from studio.engines.stablesr import components, selection
from studio.engines.stablesr.engine import StableSREngine
from studio.engines.stablesr.files import apply_file
from studio.settings import Settings, apply_layer


@pytest.fixture
def toy_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy file's configs stand in for the shipped SD 2.1 ones."""
    monkeypatch.setattr(components, "shipped_configs", lambda prediction="epsilon": tiny_module_configs())
    monkeypatch.setattr(selection, "shipped_configs", lambda prediction="epsilon": tiny_module_configs())


@pytest.fixture(scope="module")
def full_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_full_file(tmp_path_factory.mktemp("stablesr_full") / "stablesr_tiny_full.ckpt")


def _base_folder(folder: Path) -> Path:
    """A diffusers SD folder of the toy architecture with CLIP's tokenizer and the shipped schedule (random
    weights: the full file replaces every one of them)."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.diffusion.clip_tokenizer import clip_tokenizer

    configs = tiny_module_configs()
    schedule = json.loads((Path(components.project_root()) / "configs" / "stablesr" / "scheduler.json").read_text())
    pipe = diffusers.StableDiffusionPipeline(
        vae=diffusers.AutoencoderKL(**configs.vae),
        text_encoder=CLIPTextModel(CLIPTextConfig(**TINY_TEXT)),
        tokenizer=clip_tokenizer(),
        unet=diffusers.UNet2DConditionModel(**configs.unet),
        scheduler=diffusers.DDIMScheduler.from_config(schedule),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _engine(**values: object) -> StableSREngine:
    base = {"engine": "stablesr", "steps": 2, "seed": 3, "stage1": "lanczos", "tile": 0, "prompt": "a cat"}
    return StableSREngine(apply_layer(Settings(), {**base, **values}, "cli"))


def _image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.kron(rng.random((4, 4, 3), dtype=np.float32), np.ones((8, 8, 1), np.float32))


@pytest.mark.slow
def test_full_file_alone_equals_the_same_file_on_a_diffusers_base(
    toy_configs: None, full_file: Path, tmp_path: Path
) -> None:
    alone = _engine(model=str(full_file))
    assert alone.selection.standalone and alone.selection.adapters == ()
    StableSREngine.check_files(alone.settings)
    result = alone.restore(_image(), 1.0)
    record = result.provenance["adapters"][0]
    assert record["layout"] == "full" and "configs/clip" in record["tokenizer"]
    on_base = _engine(model=str(_base_folder(tmp_path / "sd")), adapter=str(full_file))
    assert not on_base.selection.standalone
    np.testing.assert_array_equal(result.image, on_base.restore(_image(), 1.0).image)


def test_full_file_on_the_command_line_dry_run_and_run_agree(
    toy_configs: None, full_file: Path, photo: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from studio.cli import app

    args = ["restore", str(photo), "--engine", "stablesr", "--model", str(full_file), "--steps", "1"]
    args += ["--stage1", "lanczos", "--scale", "0.5", "--tile", "0", "-o", str(tmp_path / "out.png")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    run = CliRunner().invoke(app, args, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert (tmp_path / "out.png").is_file()


def test_an_adapter_only_file_as_model_is_refused_in_words(tmp_path: Path) -> None:
    from support.stablesr_tiny import write_official_files

    from studio.errors import UsageError

    adapter, _ = write_official_files(tmp_path)
    with pytest.raises(UsageError, match="holds StableSR's adapter layout, not the full model; give an SD 2.1 base"):
        _engine(model=str(adapter))


def test_shipped_sd21_configs_take_every_key_of_the_published_full_file() -> None:
    """The 512 file's 1,616 keys (tests/fixtures, derived from the reference code) fill the modules built from
    configs/stablesr exactly, on the meta device."""
    keys = json.loads((FIXTURES / "stablesr_keys_512.json").read_text())["keys"]
    state = {key: torch.empty(shape, device="meta") for key, shape in keys.items()}
    unet, vae, text = components.meta_modules(components.shipped_configs(), torch.float16)
    loaded = apply_file(Path("stablesr_000117.ckpt"), "stablesr-000117", unet, vae, text, state)
    assert loaded.layout == "full" and loaded.adapter is not None
    assert {p.dtype for p in unet.parameters()} == {torch.float16}
