"""The CLIP tokenizer of Stable Diffusion 1.x/2.x, built offline from the merges file studio ships.

CLIP's vocabulary is not stored separately: it is the 256 byte symbols, the same with the end-of-word mark
'</w>', one entry per merge (in merge order), then the start and end tokens: 49,408 entries. The merges come
from configs/clip/bpe_simple_vocab_16e6.txt.gz (OpenAI, MIT; see configs/clip/README.md). SD 2.x pads with
'!' (id 0, as OpenCLIP pads with zeros); SD 1.x with the end token.
"""

from __future__ import annotations

import functools
import gzip
from typing import Any

from studio.settings.layers import project_root

MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2  # the vocabulary size CLIP was trained with, less bytes and special tokens
START, END = "<|startoftext|>", "<|endoftext|>"
SD2_PAD = "!"


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-in for each of the 256 bytes, in vocabulary order: the printable bytes
    as themselves first, then the others mapped to chr(256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + n) for n in range(len(others))]


@functools.cache
def vocabulary() -> tuple[dict[str, int], list[str]]:
    """(token -> id, merges as 'a b' lines) derived from the shipped merges file."""
    path = project_root() / "configs" / "clip" / MERGES_FILE
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : MERGE_COUNT + 1]  # the first line is a version header
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(merge.replace(" ", "") for merge in merges), START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = SD2_PAD, model_max_length: int = 77) -> Any:
    """A transformers CLIPTokenizer equal to SD 2.x's (`pad_token=END` for SD 1.x's)."""
    from transformers import CLIPTokenizer

    vocab, merges = vocabulary()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=[tuple(merge.split()) for merge in merges],
        unk_token=END,
        bos_token=START,
        eos_token=END,
        pad_token=pad_token,
        model_max_length=model_max_length,
    )
