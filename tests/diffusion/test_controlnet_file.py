"""A ControlNet given as one file (diffusers or original layout) loads offline on the base's UNet and steers
the stablesr and supir engines exactly as the same ControlNet saved as a folder; files of no known layout,
or of another engine's kind, stop the run in one line (exit 2), in --dry-run as in the real run.

Tiny random models (tests/support/stablesr_tiny.py, studio/testing/tiny_sdxl.py): wiring, not quality.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from support import FIXTURES
from support.stablesr_tiny import tiny_keys, write_controlnet_base, write_official_files

from studio.diffusion.controlnet_files import load_controlnet_file
from studio.diffusion.identify import kind_of
from studio.engines import research_checkpoints
from studio.engines.stablesr.engine import StableSREngine
from studio.engines.supir.engine import SupirEngine
from studio.errors import ModelLoadError, UsageError
from studio.settings import Settings, apply_layer, resolve

FIXTURES = FIXTURES
RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

CHECKPOINTS = research_checkpoints()
"""The engines' research checkpoint kinds (stablesr, supir), as the engines hand them to identify."""


def original_layout(state: dict, layers_per_block: int, prefix: str = "control_model.") -> dict:
    """An SD 1.x ControlNet's diffusers keys renamed to lllyasviel's original ones: the inverse of what
    diffusers' converter does, written out here for the test (the product uses diffusers' converter)."""
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "controlnet_cond_embedding.conv_in": "input_hint_block.0",
        "controlnet_cond_embedding.conv_out": "input_hint_block.14",
        "controlnet_mid_block": "middle_block_out.0",
    }
    span = layers_per_block + 1
    rules = [
        (r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", lambda m: f"input_hint_block.{2 * int(m[1]) + 2}.{m[2]}"),
        (r"controlnet_down_blocks\.(\d+)\.(.+)", lambda m: f"zero_convs.{m[1]}.0.{m[2]}"),
        (
            r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * span + int(m[2])}.0.{RESNET[m[3]]}.{m[4]}",
        ),
        (
            r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * span + int(m[2])}.1.{m[3]}",
        ),
        (
            r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * span + layers_per_block}.0.op.{m[2]}",
        ),
        (r"mid_block\.resnets\.(\d+)\.(\w+)\.(.+)", lambda m: f"middle_block.{2 * int(m[1])}.{RESNET[m[2]]}.{m[3]}"),
        (r"mid_block\.attentions\.0\.(.+)", lambda m: f"middle_block.1.{m[1]}"),
        (r"(?:add|class)_embedding\.linear_([12])\.(.+)", lambda m: f"label_emb.0.{2 * int(m[1]) - 2}.{m[2]}"),
    ]
    renamed = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in fixed:
            renamed[f"{prefix}{fixed[module]}.{param}"] = value
            continue
        for pattern, rename in rules:
            if match := re.fullmatch(pattern, key):
                renamed[prefix + rename(match)] = value
                break
        else:
            raise AssertionError(f"no original name for {key}")
    return renamed


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy SD 1.x base, its ControlNet as a folder, and the same weights as single files."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("cn_file")
    base, folder = write_controlnet_base(root)
    diffusers_file = root / "tile.safetensors"
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", diffusers_file)
    state = load_file(diffusers_file)
    layers = json.loads((folder / "config.json").read_text())["layers_per_block"]
    original_pth = root / "control_tile.pth"
    torch.save(original_layout(state, layers), original_pth)
    original_bare = root / "control_tile_bare.safetensors"
    save_file(original_layout(state, layers, prefix=""), original_bare)
    bad = root / "bad.safetensors"
    save_file({"first.weight": torch.zeros(2), "second.bias": torch.zeros(2)}, bad)
    return {
        "base": base,
        "folder": folder,
        "file": diffusers_file,
        "original": original_pth,
        "original_bare": original_bare,
        "bad": bad,
    }


def test_detection_by_key_names() -> None:
    diffusers_keys = ["controlnet_cond_embedding.conv_in.weight", "controlnet_down_blocks.0.weight", "conv_in.weight"]
    original_keys = ["input_hint_block.0.weight", "zero_convs.0.0.weight", "time_embed.0.weight"]
    assert kind_of(diffusers_keys, CHECKPOINTS) == ("controlnet", "diffusers")
    assert kind_of(original_keys, CHECKPOINTS) == ("controlnet", "original")
    assert kind_of([f"control_model.{k}" for k in original_keys], CHECKPOINTS) == ("controlnet", "original")
    stablesr = list(tiny_keys())
    assert kind_of(
        [k for k in stablesr if k.startswith(("model.", "structcond_stage_model."))], research_checkpoints()
    ) == ("stablesr", "full")
    assert kind_of(
        [k for k in stablesr if not k.startswith(("model.", "structcond_stage_model."))], research_checkpoints()
    ) == (
        "stablesr",
        "cfw",
    )
    supir = json.loads((FIXTURES / "supir_tiny_keys.json").read_text())["keys"]
    assert kind_of(list(supir), CHECKPOINTS) == ("supir", "official")
    plain_sd = ["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.encoder.conv_in.weight"]
    assert kind_of(plain_sd, CHECKPOINTS) is None and kind_of(plain_sd + original_keys[:1], CHECKPOINTS) is None
    assert kind_of([], CHECKPOINTS) is None


SD15_UNET = {
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
"""runwayml/stable-diffusion-v1-5 unet/config.json (the fields that shape the network)."""
SD21_UNET = {
    **SD15_UNET,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
}
"""stabilityai/stable-diffusion-2-1 unet/config.json (the fields that differ from SD 1.5)."""


@pytest.mark.parametrize("name", ["sd15", "sd21", "sdxl"])
def test_original_layout_of_the_real_architectures_converts_onto_every_key(name: str) -> None:
    """Built on the meta device (no weights): lllyasviel's names for SD 1.5 / 2.1 / SDXL ControlNets map
    through diffusers' converter onto exactly the keys and shapes of the ControlNet the base implies."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from studio.diffusion.controlnet_files import from_original
    from studio.testing import tiny_sdxl as random_sdxl

    config = {"sd15": SD15_UNET, "sd21": SD21_UNET, "sdxl": random_sdxl.SDXL_UNET_CONFIG}[name]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        expected = ControlNetModel.from_unet(unet, load_weights_from_unet=False).state_dict()
    converted = from_original(original_layout(expected, config["layers_per_block"]), unet.config, name)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in expected.items()}


def stablesr_run(base: Path, adapter: Path | str) -> tuple[np.ndarray, dict]:
    values = {"model": str(base), "adapter": str(adapter), "steps": 2, "seed": 3, "stage1": "lanczos", "tile": 0}
    engine = StableSREngine(apply_layer(Settings(), {"engine": "stablesr", "guidance": 3.0, **values}, "cli"))
    rng = np.random.default_rng(1)
    image = np.kron(rng.random((4, 4, 3), dtype=np.float32), np.ones((8, 8, 1), np.float32))
    result = engine.restore(image, 1.0)
    return result.image, result.provenance


def test_stablesr_single_files_steer_exactly_as_the_folder(sd15: dict[str, Path]) -> None:
    reference, info = stablesr_run(sd15["base"], sd15["folder"])
    assert info["adapters"][0]["where"] == "folder"
    for name, layout in (("file", "diffusers"), ("original", "original"), ("original_bare", "original")):
        image, info = stablesr_run(sd15["base"], sd15[name])
        np.testing.assert_array_equal(image, reference, err_msg=name)
        record = info["adapters"][0]
        assert (record["kind"], record["layout"], record["where"], record["source"]) == (
            "controlnet",
            layout,
            "file",
            str(sd15[name]),
        )


def test_single_file_loads_in_the_asked_dtype_and_refuses_another_base(
    sd15: dict[str, Path], tiny_sdxl: tuple[Path, Path], tmp_path: Path
) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    unet = UNet2DConditionModel.from_pretrained(sd15["base"] / "unet")
    controlnet = load_controlnet_file(sd15["original"], unet, "x", torch.bfloat16)
    assert {p.dtype for p in controlnet.parameters()} == {torch.bfloat16}
    assert not any(t.is_meta for t in [*controlnet.parameters(), *controlnet.buffers()])
    sdxl_file = tmp_path / "sdxl_tile.safetensors"
    shutil.copy(tiny_sdxl[1] / "diffusion_pytorch_model.safetensors", sdxl_file)
    with pytest.raises(
        ModelLoadError, match=r"sdxl_tile.safetensors: missing ControlNet key for 'down_blocks.0.attentions"
    ):
        load_controlnet_file(sdxl_file, unet, "x", torch.float32)

    state = load_file(sd15["file"])
    state["controlnet_mid_block.weight"] = torch.zeros(64, 32, 1, 1)
    save_file(state, tmp_path / "reshaped.safetensors")
    with pytest.raises(
        ModelLoadError, match=r"'controlnet_mid_block.weight' has shape \(64, 32, 1, 1\), expected \(64, 64"
    ):
        load_controlnet_file(tmp_path / "reshaped.safetensors", unet, "x", torch.float32)


def supir_run(models: tuple[Path, Path | str], image: np.ndarray) -> tuple[np.ndarray, dict]:
    cli = {"model": str(models[0]), "adapter": str(models[1]), "min_side": 0, "steps": 2, "seed": 3}
    result = SupirEngine(resolve({**cli, "stage1": "lanczos", "prompt": "a photo"})).restore(image, 2.0)
    return result.image, result.provenance


def test_supir_single_file_steers_exactly_as_the_folder(
    tiny_sdxl: tuple[Path, Path], astronaut: np.ndarray, tmp_path: Path
) -> None:
    from studio.ops.resize import resize

    image = resize(astronaut.astype(np.float32) / 255.0, 12, 10)
    single = tmp_path / "controlnet-tile-sdxl.safetensors"
    shutil.copy(tiny_sdxl[1] / "diffusion_pytorch_model.safetensors", single)
    reference, _ = supir_run(tiny_sdxl, image)
    result, info = supir_run((tiny_sdxl[0], single), image)
    np.testing.assert_array_equal(result, reference)
    assert info["adapter_source"] == {
        "source": str(single),
        "where": "file",
        "kind": "controlnet",
        "layout": "diffusers",
    }


def test_another_engines_checkpoint_is_one_line(sd15: dict[str, Path], tmp_path: Path) -> None:
    stablesr_adapter, _ = write_official_files(tmp_path)
    cli = {"model": str(sd15["base"]), "adapter": str(stablesr_adapter)}
    with pytest.raises(UsageError, match=r"a StableSR checkpoint steers the stablesr engine, not supir"):
        SupirEngine(resolve(cli))
    with pytest.raises(ModelLoadError, match=r"bad.safetensors: neither a ControlNet .* nor a SUPIR checkpoint"):
        SupirEngine(resolve({**cli, "adapter": str(sd15["bad"])}))


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("engine", ["stablesr", "supir"])
def test_cli_unknown_or_missing_file_is_one_line(
    sd15: dict[str, Path], photo: Path, tmp_path: Path, engine: str, dry_run: bool
) -> None:
    """Exit 2 for a file of no known layout, 3 (the engine cannot run) for a missing one; --dry-run alike."""
    from typer.testing import CliRunner

    from studio.cli import app

    args = ["restore", str(photo), "-o", str(tmp_path / "out.png"), "--engine", engine, "--model", str(sd15["base"])]
    args += ["--steps", "1", *(["--dry-run"] if dry_run else [])]
    checkpoint = {"stablesr": "StableSR", "supir": "SUPIR"}[engine]
    for adapter, code, message in (
        (sd15["bad"], 2, f"bad.safetensors: neither a ControlNet (diffusers or original layout) nor a {checkpoint}"),
        (tmp_path / "absent.safetensors", 3, "absent.safetensors: weights file not found; check the path"),
    ):
        result = CliRunner().invoke(app, [*args, "--adapter", str(adapter)])
        assert result.exit_code == code, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output and not (tmp_path / "out.png").exists()
