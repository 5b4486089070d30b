"""--caption: a transformers captioner fills {caption}; absent weights cost one line, not the run.

The captioner here is a tiny random BLIP (its words are noise): it tests loading and wiring only.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.diffusion.caption import Captioner, fill_caption
from studio.diffusion.offload import Placement

CPU = Placement("none", torch.device("cpu"))


def test_fill_caption_in_the_template_or_in_front() -> None:
    assert fill_caption("{caption}, a photo, Cinematic", "a dog on grass") == "a dog on grass, a photo, Cinematic"
    assert fill_caption("{caption}, a photo", "") == "a photo"
    assert fill_caption("a photo", "a dog") == "a dog, a photo"
    assert fill_caption("", "") == ""


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("blip")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, "dog", "photo"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    text = {
        "vocab_size": len(words),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
        "encoder_hidden_size": 32,
        "bos_token_id": 2,
        "sep_token_id": 3,
        "pad_token_id": 0,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        folder
    )
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=BertTokenizer(str(folder / "vocab.txt")),
    ).save_pretrained(folder)
    return folder


def test_captioner_loads_with_transformers_and_describes(tiny_blip: Path) -> None:
    caption = Captioner(str(tiny_blip), CPU).caption(np.full((40, 40, 3), 0.5, np.float32))
    assert caption and set(caption.split()) <= {*string.ascii_lowercase, "dog", "photo"}


def test_absent_weights_say_one_line_and_give_no_caption(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    captioner = Captioner(str(tmp_path / "no-such-model"), CPU)
    assert captioner.caption(np.zeros((8, 8, 3), np.float32)) == ""
    assert captioner.caption(np.zeros((8, 8, 3), np.float32)) == ""  # tried once, not per image
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--caption" in err[0] and "going on without a caption" in err[0]


def test_preset_keeps_the_caption_slot_for_the_engine() -> None:
    from studio.runner import prepare_settings

    settings, engine = prepare_settings(
        {"engine": "supir", "preset": "supir-quality", "caption": True, "prompt": "a dog"}
    )
    assert engine == "supir" and settings.prompt.startswith("{caption}, a dog, Cinematic")
    plain, _ = prepare_settings({"engine": "supir", "preset": "supir-quality", "prompt": "a dog"})
    assert plain.prompt.startswith("a dog, Cinematic")


def test_captioner_visits_the_device_only_while_it_captions(tiny_blip: Path) -> None:
    """With a 'model' placement (the default unless --offload none) the captioner is moved in for each
    caption and out again, so it holds no GPU memory while SDXL samples (accelerate-style hooks on the CPU)."""
    from contextlib import contextmanager

    placement = Placement("model", torch.device("cpu"), even_on_cpu=True)
    visits: list[str] = []
    using = placement.using

    @contextmanager
    def recording(module: torch.nn.Module):  # type: ignore[no-untyped-def]
        visits.append(type(module).__name__)
        with using(module):
            yield module

    placement.using = recording  # type: ignore[method-assign]
    captioner = Captioner(str(tiny_blip), placement)
    first = captioner.caption(np.full((40, 40, 3), 0.5, np.float32))
    assert captioner.caption(np.full((40, 40, 3), 0.5, np.float32)) == first
    assert visits == ["BlipForConditionalGeneration"] * 2
