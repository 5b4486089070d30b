"""`studio serve` as users run it: a real server process on 127.0.0.1, loaded by 50 concurrent uploads,
and driven end to end by headless Chromium (Debian's `chromium` + `chromium-driver`; .ci/run installs them).

Results are compared pixel for pixel with `studio restore` run on the same files with the same settings.
Screenshots of the page are kept: their folder is printed (set STUDIO_SCREENSHOTS to choose it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.serving import free_port
from typer.testing import CliRunner

from studio.cli import app

httpx = pytest.importorskip("httpx")

UPLOADS = 50
FAST_UPLOADS = 10  # of the 50; the rest use the classical engine
DEADLINE_S = 90
PEAK_RSS_LIMIT = 1_500_000_000
"""The server's peak resident memory over the whole load test (Python, torch, ncnn and two workers'
Real-ESRGAN models hold ~0.5-0.7 GB); 50 uploads queued at once must not add a copy per upload."""


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_weights_dir: Path) -> Iterator[dict]:
    """`studio serve` in its own process, isolated from the developer's config and data."""
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(root / "xdg"),
        "STUDIO_CONFIG": str(root / "xdg" / "config.toml"),
        "STUDIO_WEIGHTS_DIR": str(shared_weights_dir),
        "HF_HUB_OFFLINE": "1",
    }
    log = open(root / "server.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(root / "data"),
            "--workers",
            "2",
            "--queue-limit",
            "200",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(f"server exited: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield {"base": base, "pid": process.pid, "root": root}
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _image(astronaut: np.ndarray, index: int, size: tuple[int, int] = (32, 24)) -> Image.Image:
    """Different small crops of a real photo."""
    top, left = 40 * index, 60 * index
    return Image.fromarray(astronaut[top : top + 200, left : left + 240]).resize(size, Image.Resampling.LANCZOS)


def _wait_all(client: httpx.Client, ids: list[str], deadline_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + deadline_s
    finished: dict[str, dict] = {}
    while len(finished) < len(ids) and time.monotonic() < deadline:
        for job_id in ids:
            if job_id not in finished:
                job = client.get(f"/api/v1/jobs/{job_id}").json()
                if job["status"] in ("done", "failed", "cancelled"):
                    finished[job_id] = job
        time.sleep(0.2)
    return finished


def test_fifty_concurrent_uploads_none_lost_same_pixels_as_the_cli_bounded_memory(
    server: dict, tmp_path: Path, astronaut: np.ndarray
) -> None:
    inputs = []
    for index in range(5):
        path = tmp_path / f"photo{index}.png"
        _image(astronaut, index).save(path)
        inputs.append(path)
    plan = [(inputs[i % 5], "fast" if i < FAST_UPLOADS else "classical") for i in range(UPLOADS)]
    settings = {
        "classical": {"engine": "classical", "scale": 2, "seed": 7},
        "fast": {"engine": "fast", "scale": 2, "seed": 7},
    }

    with httpx.Client(base_url=server["base"], timeout=60, limits=httpx.Limits(max_connections=UPLOADS)) as client:

        def upload(item: tuple[Path, str]) -> httpx.Response:
            path, engine = item
            return client.post(
                "/api/v1/jobs",
                files={"file": (path.name, path.read_bytes(), "image/png")},
                data={"settings": json.dumps(settings[engine])},
            )

        with ThreadPoolExecutor(UPLOADS) as pool:
            responses = list(pool.map(upload, plan))
        refused = [r.text for r in responses if r.status_code != 202]
        assert refused == []
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == UPLOADS
        finished = _wait_all(client, ids, DEADLINE_S)
        assert len(finished) == UPLOADS, f"{UPLOADS - len(finished)} jobs still unfinished"
        assert {job["status"] for job in finished.values()} == {"done"}, [j["error"] for j in finished.values()]
        results = {job_id: client.get(f"/api/v1/jobs/{job_id}/result").content for job_id in ids}
        listed = client.get("/api/v1/jobs", params={"limit": 500}).json()
    assert {job["id"] for job in listed} >= set(ids)

    memory = _memory(server["pid"])
    assert memory["VmHWM"] < PEAK_RSS_LIMIT, memory

    expected: dict[tuple[Path, str], np.ndarray] = {}
    for path, engine in set(plan):
        out = tmp_path / f"{path.stem}_{engine}_cli.png"
        cli = CliRunner().invoke(
            app, ["restore", str(path), "-o", str(out), "--engine", engine, "--scale", "2", "--seed", "7"]
        )
        assert cli.exit_code == 0, cli.output
        expected[(path, engine)] = np.asarray(Image.open(out))
    for job_id, item in zip(ids, plan):
        served = tmp_path / f"{job_id}.png"
        served.write_bytes(results[job_id])
        pixels = np.asarray(Image.open(served))
        assert pixels.shape == (48, 64, 3)
        np.testing.assert_array_equal(pixels, expected[item], err_msg=f"{item} differs from the CLI's result")


# ------------------------------------------------------------------------------------------ browser


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """Headless Debian Chromium through its matching chromedriver; downloads land in tmp_path/downloads."""
    found = _chromium()
    if found is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\nserve page screenshots: {folder}")
    return folder


def test_browser_upload_restore_compare_download(
    server: dict, browser, screenshots: Path, tmp_path: Path, astronaut: np.ndarray
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).resize((96, 96), Image.Resampling.LANCZOS).save(photo, quality=92)
    browser.get(server["base"] + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#engine option[value='fast']")))
    Select(browser.find_element(By.ID, "engine")).select_by_value("fast")
    scale = browser.find_element(By.ID, "scale")
    scale.clear()
    scale.send_keys("2")
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    browser.save_screenshot(str(screenshots / "1-settings.png"))
    browser.find_element(By.ID, "submit").click()

    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".job[data-status='done']")))
    wait.until(lambda d: d.execute_script("return document.getElementById('after').naturalWidth") == 192)
    assert browser.find_element(By.ID, "message").text == ""
    command = browser.find_element(By.ID, "command").text
    assert command.startswith("studio restore astronaut.jpg -o astronaut_restored.png") and "--engine fast" in command
    # 1:1 pixels: the result is shown at its own size, and the original is stretched to match it
    sizes = browser.execute_script(
        "const a = document.getElementById('after'), b = document.getElementById('before');"
        "return [a.getBoundingClientRect().width, b.getBoundingClientRect().width, b.naturalWidth];"
    )
    assert sizes == [192, 192, 96]
    browser.save_screenshot(str(screenshots / "2-result-slider-50.png"))
    browser.execute_script(
        "const s = document.getElementById('slider'); s.value = 15; s.dispatchEvent(new Event('input'));"
    )
    assert "85%" in browser.find_element(By.ID, "before").get_attribute("style")
    browser.save_screenshot(str(screenshots / "3-result-slider-15.png"))

    browser.find_element(By.ID, "download").click()
    target = browser.downloads / "astronaut_restored.png"
    deadline = time.monotonic() + 20
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.is_file(), list(browser.downloads.iterdir())
    from studio.io import read_provenance

    provenance = read_provenance(target)
    assert provenance["engine"] == "fast" and provenance["output_size"] == [192, 192]
    assert Image.open(target).size == (192, 192)
