"""S3Diff's files: the key table round-trips, every key lands strictly, and a damaged, foreign or unsafe file
stops in one line naming what does not fit, the same in the header-only check (--dry-run) and the load."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import torch

from studio.diffusion.loading import resolve_source
from studio.engines.onestep.s3diff import SPEC, layout_of
from studio.engines.onestep.s3diff.build import attach_lora, build_guidance, expected_shapes
from studio.engines.onestep.s3diff.files import S3DiffFile, S3DiffFiles, base_configs, read
from studio.engines.onestep.s3diff.keys import studio_to_official_name, to_official, to_studio
from studio.engines.onestep.s3diff.modulation import UNET_BLOCKS, VAE_BLOCKS, unet_block, vae_block
from studio.errors import ModelLoadError, WeightsMissing


def official(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def config_of(file: dict[str, Any]) -> dict[str, Any]:
    return {k: file[k] for k in ("rank_unet", "rank_vae", "unet_lora_target_modules", "vae_lora_target_modules")}


def test_key_table_round_trips_and_tells_s3diff_from_osediff(tiny_s3diff: tuple[Path, Path, Path]) -> None:
    file = official(tiny_s3diff[1])
    studio = to_studio(file)
    back = to_official(studio, config_of(file))
    assert set(back) == set(file)
    for name, tensor in studio.items():
        path = studio_to_official_name(name).split("/")
        value: Any = back
        for part in path:
            value = value[part]
        assert torch.equal(value, tensor), name
    assert layout_of(file) == "official"
    assert layout_of({"state_dict_unet", "state_dict_vae", "rank_unet"}) is None  # an OSEDiff file


def test_full_size_table_covers_sd_turbo_blocks() -> None:
    """On SD-Turbo's architecture (SD 2.1's configs, meta device): the authors' targets give LoRA layers in
    all 10 UNet blocks and all 6 VAE-encoder blocks, and a file with every expected key fits exactly."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from support.s3diff_tiny import UNET_TARGETS, VAE_TARGETS

    unet_config, vae_config = base_configs(None)
    tensors = {"guidance.frequencies": torch.empty(64, device="meta")}
    files = S3DiffFiles(Path("s3diff.pkl"), Path("de_net.pth"))
    loaded = S3DiffFile(files, tensors | {"estimator.conv_first.0.weight": torch.empty(64, 3, 3, 3),
                                          "estimator.fc_degree.0.0.weight": torch.empty(512, 128),
                                          "estimator.conv_first.1.weight": torch.empty(64, 3, 3, 3)},
                        32, 16, UNET_TARGETS, VAE_TARGETS)  # fmt: skip
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel.from_config(unet_config), AutoencoderKL.from_config(vae_config)
        attach_lora(unet, vae, loaded)
        guidance, estimator = build_guidance(loaded)
    shapes = expected_shapes(unet, vae, guidance, estimator)
    unet_layers = {k.rsplit(".lora_A", 1)[0][5:] for k in shapes if k.startswith("unet.") and ".lora_A." in k}
    vae_layers = {k.rsplit(".lora_A", 1)[0][4:] for k in shapes if k.startswith("vae.") and ".lora_A." in k}
    assert {unet_block(n) for n in unet_layers} == set(range(UNET_BLOCKS))
    assert {vae_block(n) for n in vae_layers} == set(range(VAE_BLOCKS))
    assert shapes["unet.conv_in.weight"] == (320, 4, 3, 3)
    assert shapes["guidance.unet.fuse.weight"] == (32 * 32, 320)
    assert shapes["guidance.vae.fuse.weight"] == (16 * 16, 320)
    assert len(unet_layers) == 257 and len(vae_layers) == 31  # counted by hand from SD 2.1's block layout


def test_tiny_files_load_strictly_through_the_spec(tiny_s3diff: tuple[Path, Path, Path]) -> None:
    base, weights, estimator = tiny_s3diff
    source = resolve_source(str(base))
    verdict = SPEC.check(source, str(weights))
    assert "every key fits" in verdict
    assert SPEC.check(source, f"{estimator},{weights}") == verdict  # either order, told apart by keys
    model = SPEC.load(source, f"{weights},{estimator}", torch.float32, False)
    file = official(weights)
    unet_state = model.components.unet.state_dict()
    for key, tensor in file["state_dict_unet"].items():
        assert torch.equal(unet_state[key], tensor), key
    assert torch.equal(model.guidance.frequencies.cpu(), file["w"])
    assert torch.equal(model.estimator.fc_degree[1][2].weight, torch.load(estimator)["fc_degree.1.2.weight"])


def damaged(tmp: Path, tiny: tuple[Path, Path, Path], change: Any) -> Path:
    file = official(tiny[1])
    change(file)
    folder = tmp / "damaged"
    folder.mkdir(exist_ok=True)
    shutil.copy(tiny[2], folder / "de_net.pth")
    torch.save(file, folder / "s3diff.pkl")
    return folder / "s3diff.pkl"


def first_lora_key(file: dict[str, Any]) -> str:
    return next(k for k in file["state_dict_unet"] if "lora_A" in k)


CASES = {
    "dropped": (lambda f: f["state_dict_unet"].pop(first_lora_key(f)), "missing 'state_dict_unet/"),
    "renamed": (
        lambda f: f["state_dict_vae"].update({"encoder.renamed.weight": f["state_dict_vae"].popitem()[1]}),
        "state_dict_vae/encoder",
    ),
    "reshaped": (
        lambda f: f["state_dict_unet_fuse_mlp"].update(weight=torch.zeros(5, 320)),
        "'state_dict_unet_fuse_mlp/weight' has shape (5, 320), expected (16, 320)",
    ),
    "entry missing": (lambda f: f.pop("state_embeddings"), "no 'state_embeddings' entry"),
    "foreign entry": (lambda f: f.update(optimizer={}), "entry 'optimizer' is not part of S3Diff's layout"),
    "rank": (lambda f: f.update(rank_unet=8), "has shape"),
}


QUICK = ("dropped", "reshaped", "foreign entry")
"""The other cases (several seconds each on a busy machine) run with the slow tests."""


@pytest.mark.parametrize("case", [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_a_damaged_file_stops_in_one_line_in_check_and_load(
    case: str, tiny_s3diff: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    change, expected = CASES[case]
    path = damaged(tmp_path, tiny_s3diff, change)
    source = resolve_source(str(tiny_s3diff[0]))
    with pytest.raises(ModelLoadError) as checked:
        SPEC.check(source, str(path))
    with pytest.raises(ModelLoadError) as loading:
        SPEC.load(source, str(path), torch.float32, False)
    assert str(checked.value) == str(loading.value)
    assert expected in str(checked.value) and "\n" not in str(checked.value)


def test_truncated_missing_and_unsafe_files(tiny_s3diff: tuple[Path, Path, Path], tmp_path: Path) -> None:
    source = resolve_source(str(tiny_s3diff[0]))
    truncated = tmp_path / "s3diff.pkl"
    truncated.write_bytes(tiny_s3diff[1].read_bytes()[:-4000])
    shutil.copy(tiny_s3diff[2], tmp_path / "de_net.pth")
    with pytest.raises(ModelLoadError, match="cannot read"):
        SPEC.check(source, str(truncated))
    unsafe = tmp_path / "unsafe" / "s3diff.pkl"
    unsafe.parent.mkdir()
    torch.save({"state_dict_unet": PurePosixPath("runs code")}, unsafe)  # not a tensor nor a plain value
    with pytest.raises(ModelLoadError, match="refused: loading it would run code"):
        SPEC.check(source, f"{unsafe},{tiny_s3diff[2]}")
    with pytest.raises(WeightsMissing):
        SPEC.check(source, str(tmp_path / "absent.pkl"))
    with pytest.raises(ModelLoadError, match="not S3Diff's degradation estimator"):
        read(S3DiffFiles(tiny_s3diff[1], tiny_s3diff[1]))


def test_registry_names_find_both_files_in_the_weights_folder(
    tiny_s3diff: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--model s3diff` resolves `s3diff-lora` to s3diff.pkl in the weights folder and finds de_net.pth (the
    `s3diff-denet` entry) beside it, as `studio weights pull s3diff` lays them out; without it, one line."""
    from studio.engines.onestep.s3diff.files import locate

    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(folder))
    shutil.copy(tiny_s3diff[1], folder / "s3diff.pkl")
    with pytest.raises(WeightsMissing, match="studio weights pull s3diff-denet"):
        locate("s3diff-lora")
    shutil.copy(tiny_s3diff[2], folder / "de_net.pth")
    expected = S3DiffFiles(folder / "s3diff.pkl", folder / "de_net.pth")
    assert locate("s3diff-lora") == locate("s3diff") == locate(f"{folder / 'de_net.pth'},s3diff-lora") == expected
