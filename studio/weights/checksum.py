"""sha256 of weights files, remembered next to the weights so `verify` and `pull` hash each file once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from studio.weights.catalog import weights_dir

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha_cache_file() -> Path:
    return weights_dir() / ".sha256-cache.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered (on disk, next to the weights) by path, mtime and size."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_mtime_ns}|{stat.st_size}"
    cache_file = _sha_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return str(cache[key])
    value = sha256_of(path)
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}
    cache[key] = value
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only weights folder only costs re-hashing next time
    return value
