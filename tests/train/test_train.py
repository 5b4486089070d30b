"""`studio train` on real photo crops with a tiny random Compact network (wiring and learning, not quality).

The network is spandrel's Real-ESRGAN Compact at 16 features and 4 convolutions, x2, randomly initialised;
the discriminator is 8 features wide; the VGG19 is random where a test needs one. Real-ESRGAN's real sizes
run the same code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from skimage import data as skdata

from studio.engines.fast.backends import load_spandrel
from studio.errors import UsageError, WeightsMissing
from studio.train import losses
from studio.train.data import batch
from studio.train.loop import TrainOptions, run
from studio.train.plan import make_plan
from studio.train.session import build_trainer, provenance

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real photos, 160 px on the long side: five to train on, one held out."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        image = Image.fromarray(getattr(skdata, name)()[..., :3])
        image.thumbnail((160, 160))
        image.save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "tiny_compact_x2.pth"
    torch.save(Compact(num_feat=16, num_conv=4, upscale=2).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_vgg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a randomly initialised VGG19 under the registry's file name."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vgg")
    layers = make_layers(cfgs["E"])[: max(losses.VGG_LAYERS) + 1]
    torch.save({f"features.{k}": v for k, v in layers.state_dict().items()}, folder / "vgg19-dcbb9e9d.pth")
    return folder


def _options(tiny_base: Path, **changes: object) -> TrainOptions:
    values = dict(base=str(tiny_base), steps=4, gt_size=64, batch=2, gan=True, perceptual_weight=0.0)
    values |= dict(disc_features=8, lr=2e-3, ema_decay=0.5, seed=3)
    return TrainOptions(**(values | changes))  # type: ignore[arg-type]


def _train(photos: Path, output: Path, options: TrainOptions, on_step=None, **kwargs: object) -> dict:  # noqa: ANN001
    plan = make_plan([photos], output, options, min_images=3, **kwargs)  # type: ignore[arg-type]
    trainer = build_trainer(plan, "cpu", "no")
    log = run(trainer, _schedule(output), plan.fingerprint(), provenance(plan), plan.arch, on_step)
    return {"log": log, "plan": plan}


def _schedule(output: Path):  # noqa: ANN202 - the loop's own dataclass
    from studio.train.loop import Schedule

    return Schedule(output, val_every=2, checkpoint_every=2, log_every=1)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def test_training_lowers_the_loss_and_raises_held_out_psnr(photos: Path, tiny_base: Path, tmp_path: Path) -> None:
    """A PSNR-oriented run (--gan off): the held-out crop's PSNR climbs above the random starting network's."""
    options = _options(tiny_base, steps=24, gan=False, ema_decay=0.0)
    output = tmp_path / "psnr.safetensors"
    plan = _train(photos, output, options)["plan"]
    log = json.loads((tmp_path / "psnr.train.json").read_text())
    assert log["validations"][-1]["psnr_y"] > log["start"]["psnr_y"] + 0.3, (log["start"], log["validations"])
    # the training loss, on one fixed batch of training crops: the starting network against the result
    samples = batch(plan.sources, 8, 64, 2, "realesrgan", 99, 0, 0, 0)
    lq = torch.from_numpy(np.stack([s.lq for s in samples]).transpose(0, 3, 1, 2).copy())
    gt = torch.from_numpy(np.stack([s.hq for s in samples]).transpose(0, 3, 1, 2).copy())
    trained = load_spandrel(output).model.eval()
    with torch.no_grad():
        before, after = (float(F.l1_loss(model(lq), gt)) for model in (plan.descriptor.model.eval(), trained))
    assert after < 0.9 * before, (before, after)


def test_ctrl_c_saves_a_checkpoint_and_resume_equals_an_uninterrupted_run(
    photos: Path, tiny_base: Path, tmp_path: Path, random_vgg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every loss on (L1, perceptual with a random VGG19, GAN): the resumed result is bit-identical."""
    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(random_vgg_dir))
    options = _options(tiny_base, perceptual_weight=1.0)
    straight = tmp_path / "straight.safetensors"
    _train(photos, straight, options)

    def interrupt(step: int, terms: dict[str, float]) -> None:
        if step == 3:
            raise KeyboardInterrupt

    broken = tmp_path / "broken.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(photos, broken, options, on_step=interrupt)
    assert not broken.exists()
    assert (tmp_path / "broken.checkpoints" / "step-0000003.pt").exists()
    _train(photos, broken, options, resume=True)
    mine, theirs = _tensors(broken), _tensors(straight)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[key], theirs[key]) for key in mine)


def test_resume_refuses_other_options(photos: Path, tiny_base: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    _train(photos, output, _options(tiny_base, steps=2))
    with pytest.raises(Exception, match=r"made with other training options \(lr\)"):
        _train(photos, output, _options(tiny_base, steps=4, lr=1e-3), resume=True)
    _train(photos, output, _options(tiny_base, steps=4), resume=True)  # more steps: fine


def test_perceptual_loss_is_zero_for_identical_images_and_needs_vgg_layers(random_vgg_dir: Path) -> None:
    state = torch.load(random_vgg_dir / "vgg19-dcbb9e9d.pth", weights_only=True)
    loss = losses.PerceptualLoss(state)
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    assert float(loss(image, image.detach()).detach()) == 0.0
    other = loss(image, torch.rand(1, 3, 32, 32))
    other.backward()
    assert float(other.detach()) > 0 and image.grad is not None and float(image.grad.abs().sum()) > 0
    del state["features.34.weight"]
    with pytest.raises(WeightsMissing, match="lacks features.34.weight"):
        losses.PerceptualLoss(state)


def test_discriminator_judges_every_pixel() -> None:
    critic = losses.UNetDiscriminator(features=8)
    assert critic(torch.rand(2, 3, 64, 48)).shape == (2, 1, 64, 48)


def _studio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_result_restores_imports_and_records_its_training(photos: Path, tiny_base: Path, tmp_path: Path) -> None:
    """The user's path: `studio train`, then `studio restore --model` on the file, then by name after import."""
    out = tmp_path / "mine.safetensors"
    trained = _studio(
        "train", str(photos), "-o", str(out), "--base", str(tiny_base), "--min-images", "3", "--steps", "2",
        "--gt-size", "64", "--batch", "2", "--gan", "off", "--perceptual-weight", "0", "--val-every", "1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "held-out pairs, starting weights: psnr_y" in trained.stderr
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    record = json.loads(meta["studio.training"])
    assert meta["studio.architecture"] == "Compact" and meta["studio.scale"] == "2"
    assert record["base_sha256"] and len(record["data_sha256"]) == 64 and record["steps"] == 2
    assert record["held_out"] and record["final_validation"]["step"] == 2
    photo = tmp_path / "small.png"
    Image.open(photos / "coffee.png").resize((48, 32)).save(photo)
    restored = _studio("restore", str(photo), "--model", str(out), "--scale", "2", "-o", str(tmp_path / "a.png"))
    assert restored.returncode == 0, restored.stderr
    assert Image.open(tmp_path / "a.png").size == (96, 64)
    imported = _studio("weights", "import", str(out), "--name", "archive-x2")
    assert imported.returncode == 0, imported.stderr
    again = _studio("restore", str(photo), "--model", "archive-x2", "--scale", "2", "-o", str(tmp_path / "b.png"))
    assert again.returncode == 0, again.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "6 training images; the fine-tuning guide asks for at least 500"),
        (("--min-images", "3", "--gt-size", "256"), "6 of 6 images are smaller than the 256 px crop"),
        (("--min-images", "3", "--base", "no-such-model"), "no-such-model"),
        (("--min-images", "3", "--perceptual-weight", "1"), "needs torchvision's VGG19: run `studio weights pull"),
        (("--min-images", "3", "--gt-size", "60"), "--gt-size 60: expected a multiple of 8"),
        (("--min-images", "3", "--gan", "maybe"), "--gan 'maybe': expected on or off"),
        (("--min-images", "3", "-o", "model.pth"), "the result is a .safetensors file"),
    ],
)
def test_bad_training_requests_get_one_line_in_dry_run_and_real_run(
    photos: Path, tiny_base: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    from typer.testing import CliRunner

    from studio.cli import app

    base = ("--base", str(tiny_base), "--perceptual-weight", "0", "--gt-size", "64")
    args = ["train", str(photos), "-o", str(tmp_path / "m.safetensors"), *base, *extra]
    for mode in ([], ["--dry-run"]):
        result = CliRunner().invoke(app, args + mode)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.stderr.split()), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_too_little_disk_is_refused_before_training(
    photos: Path, tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(UsageError, match="MiB free, checkpoints and the result need about"):
        make_plan([photos], tmp_path / "m.safetensors", _options(tiny_base), min_images=3)
