"""Named conditioning tensors and classifier-free guidance over them (plain tensors, no models)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from studio.diffusion.conditioning import Conditioning, unet_kwargs
from studio.diffusion.guidance import guided
from studio.diffusion.latent_tiling import Window, tiled_denoiser


def test_crop_cuts_spatial_entries_at_their_own_scale_and_keeps_the_rest() -> None:
    cond = Conditioning(
        {
            "encoder_hidden_states": torch.zeros(1, 7, 4),
            "low_res": torch.randn(1, 3, 10, 12),
            "control_0": torch.randn(1, 3, 80, 96),
        },
        {"low_res": 1, "control_0": 8},
    )
    window = Window(2, 6, 3, 9)
    cropped = cond.crop(window)
    assert cropped["encoder_hidden_states"] is cond["encoder_hidden_states"]
    assert torch.equal(cropped["low_res"], cond["low_res"][..., 2:6, 3:9])
    assert torch.equal(cropped["control_0"], cond["control_0"][..., 16:48, 24:72])
    assert cond.crop(None) is cond


def test_batch_joins_key_by_key_and_refuses_different_keys() -> None:
    a = Conditioning({"encoder_hidden_states": torch.zeros(1, 2, 3), "class_labels": torch.tensor([5])})
    b = Conditioning({"encoder_hidden_states": torch.ones(1, 2, 3), "class_labels": torch.tensor([6])})
    both = a.batch(b)
    assert both.batch_size == 2 and both["class_labels"].tolist() == [5, 6]
    assert torch.equal(both["encoder_hidden_states"][1], torch.ones(2, 3))
    with pytest.raises(ValueError, match="keys"):
        a.batch(Conditioning({"encoder_hidden_states": torch.zeros(1, 2, 3)}))
    with pytest.raises(ValueError, match="spatial"):
        Conditioning({"a": torch.zeros(1)}, {"b": 1})


def test_unet_kwargs_names_sdxl_conditions_only_when_both_are_present() -> None:
    text = torch.zeros(1, 2, 3)
    assert set(unet_kwargs(Conditioning({"encoder_hidden_states": text}))) == {"encoder_hidden_states"}
    sdxl = Conditioning(
        {"encoder_hidden_states": text, "text_embeds": torch.zeros(1, 4), "time_ids": torch.zeros(1, 6)}
    )
    assert set(unet_kwargs(sdxl)["added_cond_kwargs"]) == {"text_embeds", "time_ids"}


def _offset_model(calls: list[int]):
    def model(x, t, cond, window):
        calls.append(x.shape[0])
        return x + cond["encoder_hidden_states"].reshape(-1, 1, 1, 1)

    return model


def test_guidance_combines_branches_and_scale_one_skips_the_negative() -> None:
    calls: list[int] = []
    model = _offset_model(calls)
    x = torch.zeros(1, 1, 2, 2)
    cond = Conditioning({"encoder_hidden_states": torch.tensor([[1.0]])})
    uncond = Conditioning({"encoder_hidden_states": torch.tensor([[0.0]])})
    out = guided(model, cond, uncond, 3.0)(x, 0, None)
    assert torch.allclose(out, torch.full_like(x, 3.0)) and calls == [2]  # 0 + 3 * (1 - 0), one batched call
    assert torch.allclose(guided(model, cond, uncond, 1.0)(x, 0, None), torch.ones_like(x)) and calls[-1] == 1
    scheduled = guided(model, cond, uncond, lambda t: 2.0 * t)  # a scale that follows the timestep
    assert torch.allclose(scheduled(x, torch.tensor(2.5), None), torch.full_like(x, 5.0))


def test_tiled_guided_model_with_pixel_space_conditioning_equals_whole() -> None:
    """A per-pixel model reading an 8x larger control map: tiling crops it exactly to each window."""
    control = torch.randn(1, 1, 40 * 8, 48 * 8)

    def model(x, t, cond, window):
        local = cond.crop(window)["control_0"]
        pooled = torch.nn.functional.avg_pool2d(local, 8)
        return x * pooled + cond["encoder_hidden_states"].reshape(-1, 1, 1, 1)

    cond = Conditioning({"encoder_hidden_states": torch.tensor([[1.0]]), "control_0": control}, {"control_0": 8})
    uncond = Conditioning({"encoder_hidden_states": torch.tensor([[0.5]]), "control_0": control}, {"control_0": 8})
    denoiser = guided(model, cond, uncond, 4.0)
    x = torch.randn(1, 4, 40, 48)
    tiled = tiled_denoiser(denoiser, 40, 48, 16, 6)
    torch.testing.assert_close(tiled(x, 0, None), denoiser(x, 0, None))
