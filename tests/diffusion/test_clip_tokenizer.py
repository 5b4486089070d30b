"""CLIP's tokenizer, derived offline from the shipped merges, gives CLIP's own token ids."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from studio.diffusion.clip_tokenizer import END, START, clip_tokenizer, vocabulary


def test_vocabulary_has_clips_size_and_order() -> None:
    vocab, merges = vocabulary()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab[START] == 49406 and vocab[END] == 49407


def test_ids_are_clips_and_sd2_pads_with_the_exclamation_mark() -> None:
    tokenizer = clip_tokenizer()
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=10).input_ids
    # CLIP's published ids: a 320, photo 1125, of 539, cat 2368; SD 2.x pads with '!' (0), as OpenCLIP
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0]
    assert clip_tokenizer(pad_token=END).pad_token_id == 49407  # SD 1.x's padding
    assert tokenizer("A Photo, OF a CAT").input_ids == [49406, 320, 1125, 267, 539, 320, 2368, 49407]
