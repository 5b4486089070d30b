"""Latent tiling, the tile policy, guidance wrappers and the tiled VAE (tiny photo VAE, no network)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.diffusion import tiled_vae
from studio.diffusion.conditioning import Conditioning
from studio.diffusion.guidance import classifier_free_guidance
from studio.diffusion.latent_tiling import (
    LATENT_OVERLAP,
    choose_latent_tiles,
    tiled_denoiser,
    unet_work,
)
from studio.diffusion.offload import Placement
from studio.ops.tiling import tile_grid


def test_tiled_model_equals_whole_for_a_local_model_with_spatial_conditioning() -> None:
    """A per-pixel model that crops a latent map and a 4x pixel map from opaque `cond`: tiling is exact."""
    cond = {"latent_map": torch.randn(1, 2, 40, 56), "pixel_map": torch.randn(1, 1, 160, 224)}

    def model(x, t, cond, window=None):
        latent_map, pixel_map = cond["latent_map"], cond["pixel_map"]
        if window is not None:
            latent_map, pixel_map = latent_map[(..., *window.slices)], pixel_map[(..., *window.scaled(4).slices)]
        pooled = torch.nn.functional.avg_pool2d(pixel_map, 4)
        return x * latent_map[:, :1] + latent_map[:, 1:] * t + pooled

    x = torch.randn(1, 4, 40, 56)
    tiled = tiled_denoiser(model, 40, 56, 16, 4)
    assert len(tile_grid(40, 56, 16, 4, multiple=8)) > 4
    torch.testing.assert_close(tiled(x, 0.5, cond), model(x, 0.5, cond))


def test_one_window_returns_the_model_itself() -> None:
    def model(x, t, cond, window=None):
        return x

    assert tiled_denoiser(model, 32, 32, 64, 16) is model


def test_tiled_model_under_guidance_blends_both_branches(astronaut: np.ndarray) -> None:
    """Guidance over a tiled model, or tiling over a guided denoiser `(x, t, window)`: both match untiled."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    image = torch.from_numpy(astronaut[::8, ::8].astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = torch.cat([image, image.mean(1, keepdim=True)], 1)  # 64x64, four channels

    def model(x, t, cond, window=None):
        return conv(x) + cond["bias"].reshape(-1, 1, 1, 1)

    cond, uncond = Conditioning({"bias": torch.tensor([[1.0]])}), Conditioning({"bias": torch.tensor([[0.0]])})
    guided = classifier_free_guidance
    with torch.no_grad():
        whole = guided(model, cond, uncond, 3.0)(x, 0, None)
        tiled_model = guided(tiled_denoiser(model, 64, 64, 32, 8), cond, uncond, 3.0)(x, 0, None)
        tiled_denoiser_ = tiled_denoiser(guided(model, cond, uncond, 3.0), 64, 64, 32, 8)(x, 0, None)
    # a 3x3 conv needs 1 cell of context; the feather's zero margin gives it, in either order
    assert (tiled_model - whole).abs().max() < 1e-5
    assert (tiled_denoiser_ - whole).abs().max() < 1e-5


def test_policy_runs_untiled_when_the_latent_fits() -> None:
    assert choose_latent_tiles(64, 64, free_bytes=64 * 64 * 100, bytes_per_pixel=100) == (0, 0)


@pytest.mark.parametrize("side", [256, 384, 512, 768, 1024, 1536, 2048])
def test_policy_keeps_unet_work_within_the_target(side: int) -> None:
    """The largest tile that fits, evenly divided: <= 1.3x the no-overlap work, and within memory."""
    free, per_pixel = 2**29, 12_000  # 512 MiB at SD x4's fp16 cost per latent cell of a guided call
    tile, overlap = choose_latent_tiles(side, side, free, per_pixel)
    assert tile > 0 and overlap == LATENT_OVERLAP
    grid = tile_grid(side, side, tile, overlap, multiple=8)
    assert max(w.height * w.width for w in grid) * per_pixel <= free
    assert all(w.height % 8 == 0 and w.width % 8 == 0 for w in grid)
    assert unet_work(side, side, tile, overlap) <= 1.3 * side * side


def test_grid_work_at_every_side_up_to_912_latent_cells() -> None:
    """Work is the product of the two sides' window lengths over the area, so bounding each side bounds every
    output up to 7296 px: 128 tiles with 16 shared stay <= 1.3x in 2-D (the old rounding reached 1.54x)."""
    from studio.ops.tiling import spans

    worst = max(sum(e - s for s, e in spans(side, 128, 16, 8)) / side for side in range(1, 913))
    assert worst**2 <= 1.3


def test_the_old_automatic_tiling_was_wasteful() -> None:
    """The regression the policy fixes: 128 tiles with 32 overlap did 1.56x the work at 512."""
    assert unet_work(512, 512, 128, 32) / 512**2 > 1.5


# ---- tiled VAE -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_vae(tiny_photo_vae_path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(tiny_photo_vae_path).eval()


@pytest.fixture(scope="module")
def photo_tensor(astronaut: np.ndarray) -> torch.Tensor:
    """The astronaut at 256x256 as (1, 3, H, W) in [-1, 1]."""
    from PIL import Image

    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    return torch.from_numpy(small.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def photo_latent(photo_vae, photo_tensor) -> torch.Tensor:
    return tiled_vae.encode(photo_vae, photo_tensor)


def test_tiled_encode_is_close_to_the_whole_encode(photo_vae, photo_tensor, photo_latent) -> None:
    tiled = tiled_vae.encode(photo_vae, photo_tensor, tile=12, pad=4)
    assert tiled.shape == photo_latent.shape == (1, 4, 32, 32)
    spread = photo_latent.std()
    assert (tiled - photo_latent).abs().mean() < 0.05 * spread
    # and the tiles decode to the photo as well as the whole encode does
    with torch.no_grad():
        whole_error = (photo_vae.decode(photo_latent).sample - photo_tensor).abs().mean()
        tiled_error = (photo_vae.decode(tiled).sample - photo_tensor).abs().mean()
    assert tiled_error < 1.05 * whole_error


def test_sampling_draws_the_noise_diffusers_draws(photo_vae, photo_tensor) -> None:
    ours = tiled_vae.encode(photo_vae, photo_tensor, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = photo_vae.encode(photo_tensor).latent_dist.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs)
    tiled = tiled_vae.encode(photo_vae, photo_tensor, tile=12, pad=4, generator=torch.Generator().manual_seed(3))
    assert (tiled - theirs).abs().mean() < 0.05 * theirs.std()


def per_tile_decode(vae, latent: torch.Tensor, tile: int, pad: int) -> np.ndarray:
    """Naive tiling: each tile normalised by its own GroupNorm statistics."""
    height, width = latent.shape[-2:]
    out = np.zeros((height * 8, width * 8, 3), np.float32)
    for win in tile_grid(height, width, tile, 0):
        ctx = win.padded(pad, height, width)
        part = vae.decode(latent[(..., *ctx.slices)]).sample
        top, left = (win.top - ctx.top) * 8, (win.left - ctx.left) * 8
        out[win.scaled(8).slices] = tiled_vae.to_image(
            part[..., top : top + win.height * 8, left : left + win.width * 8]
        )
    return out


def test_tiled_decode_with_shared_group_norms_beats_per_tile_norms(photo_vae, photo_latent) -> None:
    with torch.no_grad():
        whole = tiled_vae.decode(photo_vae, photo_latent)
        shared = tiled_vae.decode(photo_vae, photo_latent, tile=8, pad=4)
        naive = per_tile_decode(photo_vae, photo_latent, 8, 4)
    assert shared.shape == whole.shape == (256, 256, 3)
    shared_err, naive_err = np.abs(shared - whole).mean(), np.abs(naive - whole).mean()
    # 64 px tiles of a VAE with global attention in its middle: not exact (about 4/255 on average here),
    # but less than half the error of tiles normalised each by its own statistics (about 9/255)
    assert shared_err < 0.02
    assert shared_err < 0.5 * naive_err


def test_pooled_statistics_of_one_whole_tile_equal_the_untiled_ones(photo_vae, photo_latent) -> None:
    """Pooling sums is exact: with one window covering everything, frozen decode == plain decode."""
    grid = tile_grid(32, 32, 0, 0)

    def run(z):
        return photo_vae.decode(z).sample

    with torch.no_grad():
        stats = tiled_vae.group_norm_stats(run, photo_vae.decoder, photo_latent, grid, grid, 1)
        with tiled_vae.frozen_group_norms(photo_vae.decoder, stats):
            frozen = run(photo_latent)
        plain = run(photo_latent)
    torch.testing.assert_close(frozen, plain, atol=1e-4, rtol=0)
    assert not any("forward" in vars(m) for m in photo_vae.decoder.modules())  # patches removed


class Chain(torch.nn.Module):
    """Two modules in a row, exposing the diffusers blocks the tiled VAE reads its scale from."""

    def __init__(self, first, second, blocks_name: str, blocks) -> None:
        super().__init__()
        self.first, self.second = first, second
        setattr(self, blocks_name, blocks)

    def forward(self, x):
        return self.second(self.first(x))


def test_a_bare_encoder_and_decoder_can_be_passed(photo_vae, photo_tensor, photo_latent) -> None:
    """Modules other than the VAE's own (a fine-tuned encoder, a fused decoder) tile the same way."""
    encoder = Chain(photo_vae.encoder, photo_vae.quant_conv, "down_blocks", photo_vae.encoder.down_blocks)
    decoder = Chain(photo_vae.post_quant_conv, photo_vae.decoder, "up_blocks", photo_vae.decoder.up_blocks)
    with torch.no_grad():
        latent = tiled_vae.encode(encoder, photo_tensor, tile=12, pad=4)
        reference_latent = tiled_vae.encode(photo_vae, photo_tensor, tile=12, pad=4)
        image = tiled_vae.decode(decoder, photo_latent, tile=8, pad=4)
        reference = tiled_vae.decode(photo_vae, photo_latent, tile=8, pad=4)
    torch.testing.assert_close(latent, reference_latent, atol=1e-5, rtol=0)
    np.testing.assert_allclose(image, reference, atol=1e-5)


def test_vae_tile_is_the_largest_whose_context_fits() -> None:
    assert tiled_vae.choose_vae_tile(64, 64, free_bytes=64 * 64 * 10, bytes_per_cell=10) == 0
    tile = tiled_vae.choose_vae_tile(512, 512, free_bytes=2**30, bytes_per_cell=64_000, pad=16)
    assert tile % 8 == 0 and (tile + 32) ** 2 * 64_000 <= 2**30 < (tile + 8 + 32) ** 2 * 64_000
    # bigger tiles waste less on context and on the statistics sample
    assert tiled_vae.vae_work(512, 512, tile, 16) < tiled_vae.vae_work(512, 512, 64, 16)


def test_encode_rejects_sides_that_do_not_divide(photo_vae) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        tiled_vae.encode(photo_vae, torch.zeros(1, 3, 60, 64))


def test_statistics_sample_spreads_over_rows_and_columns() -> None:
    windows = tile_grid(2048, 2048, 64, 0)
    chosen = [windows[i] for i in tiled_vae._sample(windows, 16)]
    assert len(chosen) == 16
    assert {w.top for w in chosen} >= {0, 1984} and {w.left for w in chosen} >= {0, 1984}


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offloaded_vae_tiles_and_keeps_working(tiny_photo_vae_path, photo_tensor, mode: str) -> None:
    """Bug 1: tiled decode under sequential offload hit 'Tensor on device meta' and broke the VAE's hooks."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_photo_vae_path).eval()
    with torch.no_grad():
        reference_latent = tiled_vae.encode(vae, photo_tensor)
        reference_image = tiled_vae.decode(vae, reference_latent, tile=8, pad=4)
        reference_plain = vae.decode(reference_latent).sample
    placement = Placement(mode, torch.device("cpu"), even_on_cpu=True)
    placement.prepare([vae])
    if mode == "sequential":
        assert vae.decoder.conv_in.weight.device.type == "meta"  # accelerate's hooks hold the weights
    with torch.no_grad(), placement.using(vae):
        latent = tiled_vae.encode(vae, photo_tensor, tile=12, pad=4)
        image = tiled_vae.decode(vae, reference_latent, tile=8, pad=4)
        after = vae.decode(reference_latent).sample  # plain use afterwards still works
    assert (latent - reference_latent).abs().mean() < 0.05 * reference_latent.std()
    np.testing.assert_allclose(image, reference_image, atol=1e-5)
    torch.testing.assert_close(after, reference_plain, atol=1e-5, rtol=0)


def test_host_pixels_windows_equal_the_whole_tensor_cut(astronaut: np.ndarray) -> None:
    """A window read from host memory has the very values of the same cut of the whole-image tensor."""
    from studio.diffusion.pixels import HostPixels

    image = astronaut[:40, :56].astype(np.float32) / 255
    for signed, dtype in ((True, torch.float32), (False, torch.bfloat16)):
        pixels = HostPixels(image, torch.device("cpu"), dtype, signed=signed)
        whole = pixels.whole()
        assert pixels.shape == whole.shape == (1, 3, 40, 56) and whole.dtype == dtype
        assert torch.equal(pixels[..., 8:24, 16:48], whole[..., 8:24, 16:48])
        assert torch.equal(pixels.repeated(2)[..., 0:8, 0:8], whole[..., 0:8, 0:8].expand(2, -1, -1, -1))
    assert float(HostPixels(image, torch.device("cpu"), torch.float32, signed=True).whole().min()) < 0


def test_tiled_encode_reads_host_pixels_as_it_reads_the_tensor(photo_vae, photo_tensor) -> None:
    from studio.diffusion.pixels import HostPixels

    image = (photo_tensor[0].permute(1, 2, 0).numpy() + 1) / 2
    host = HostPixels(image, torch.device("cpu"), torch.float32, signed=True)
    tensor = host.whole()
    torch.testing.assert_close(
        tiled_vae.encode(photo_vae, host, tile=12, pad=4),
        tiled_vae.encode(photo_vae, tensor, tile=12, pad=4),
        atol=0,
        rtol=0,
    )
    torch.testing.assert_close(tiled_vae.encode(photo_vae, host), tiled_vae.encode(photo_vae, tensor), atol=0, rtol=0)


def test_tiled_cfw_decode_keeps_the_fusion_and_matches_the_whole_decode(photo_vae, photo_tensor, photo_latent) -> None:
    """CFW fusion (random fusion layers, scaled down) on the tiny photo VAE: each tile fuses the encoder's
    features of its own region, so tiling costs the fused decode no more than it costs a plain decode, and
    the tiled result keeps the fusion's effect."""
    from studio.diffusion.pixels import HostPixels
    from studio.engines.stablesr.networks import CFWFusion

    torch.manual_seed(0)
    fusion = CFWFusion.for_vae(photo_vae).eval()
    with torch.no_grad():
        for parameter in fusion.parameters():
            parameter.mul_(0.6)
    fusion.attach(photo_vae)
    fusion.weight = 1.0
    image = (photo_tensor[0].permute(1, 2, 0).numpy() + 1) / 2
    pixels = HostPixels(image, torch.device("cpu"), torch.float32, signed=True)
    try:
        whole = tiled_vae.decode_fused(photo_vae, photo_latent, pixels, fusion.capturing)
        tiled = tiled_vae.decode_fused(photo_vae, photo_latent, pixels, fusion.capturing, tile=8, pad=4)
        fusion.weight = 0.0
        plain = tiled_vae.decode_fused(photo_vae, photo_latent, pixels, fusion.capturing)
    finally:
        fusion.detach()
    plain_tiling_error = np.abs(tiled_vae.decode(photo_vae, photo_latent, tile=8, pad=4) - plain).mean()
    assert tiled.shape == whole.shape == (256, 256, 3)
    assert np.abs(whole - plain).mean() > 0.02  # the fusion changes the image
    assert np.abs(tiled - whole).mean() <= 1.1 * plain_tiling_error
    assert np.abs(tiled - plain).mean() > 1.5 * np.abs(tiled - whole).mean()


def test_host_control_images_reach_the_device_one_window_at_a_time(astronaut: np.ndarray) -> None:
    """Guidance batches a host control image without copying it; a tile crop converts only its window."""
    from studio.diffusion.latent_tiling import Window
    from studio.diffusion.pixels import HostPixels

    image = astronaut[:64, :96].astype(np.float32) / 255
    host = HostPixels(image, torch.device("cpu"), torch.float32)
    text = torch.zeros(1, 4, 8)
    cond = Conditioning({"encoder_hidden_states": text + 1, "control_0": host}, {"control_0": 8})
    uncond = Conditioning({"encoder_hidden_states": text, "control_0": host}, {"control_0": 8})
    both = uncond.batch(cond)
    assert isinstance(both["control_0"], HostPixels) and both["control_0"].shape == (2, 3, 64, 96)
    window = Window(2, 6, 4, 12)
    cut = both.crop(window)["control_0"]
    expected = host.whole()[..., 16:48, 32:96]
    assert cut.shape == (2, 3, 32, 64) and torch.equal(cut, expected.expand(2, -1, -1, -1))
    whole = both.crop(None)["control_0"]
    assert isinstance(whole, torch.Tensor) and whole.shape == (2, 3, 64, 96)


def test_encoders_mode_keeps_text_encoders_in_ram_between_prompts() -> None:
    """The default placement on a GPU: denoising networks on the device, text encoders visit it only while
    encoding. Modules here record where they are sent (a CUDA device object needs no GPU to exist)."""

    class Recorded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.moves: list[str] = []

        def to(self, target: object, *args: object, **kwargs: object) -> Recorded:  # type: ignore[override]
            self.moves.append(str(target))
            return self

    text, unet, vae = Recorded(), Recorded(), Recorded()
    placement = Placement("encoders", torch.device("cuda"))
    placement.prepare([text, unet, vae], (text,))
    assert (text.moves, unet.moves, vae.moves) == (["cpu"], ["cuda"], ["cuda"])
    with placement.using(text):
        assert text.moves[-1] == "cuda"
    with placement.using(unet):
        pass
    assert text.moves == ["cpu", "cuda", "cpu"] and unet.moves == ["cuda"]
    none = Placement("none", torch.device("cuda"))
    none.prepare([text], (text,))
    with none.using(text):
        pass
    assert text.moves[-1] == "cuda" and len(text.moves) == 4
