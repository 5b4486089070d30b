"""`studio video` against `studio restore` on the same frames, its decode/encode overhead, and its memory.

    python benchmarks/bench_video.py                       # 854x480, 24 frames, fast x2 (needs a fast machine)
    python benchmarks/bench_video.py --width 160 --height 90 --frames 12 --memory-size 160x90

1. Throughput, same run: a clip made from a real photo (scikit-image's astronaut, camera pan, sensor noise)
   restored by `studio video --engine fast --scale 2 --temporal 0`, and the same frames written as PNG files
   restored by one `studio restore FOLDER --engine fast --scale 2` batch. Each command is a fresh process,
   timed end to end (start-up and model loading included in both), interleaved, best of --repeats.
   `studio video` at the default --temporal is timed too (the blend's own cost).
2. Overhead, in one process: decoding every frame, restoring every frame (the engine and recipe only), and
   encoding every restored frame (libx264 CRF 18), each timed alone; then the whole `run_video` (which
   overlaps decoding and encoding with inference in worker threads). Overhead = run_video / restore - 1.
3. Memory: peak resident memory of `studio video` on a 10 s and a 60 s clip (--memory-engine, classical by
   default: on a small CPU the fast engine would take hours for 60 s), each in its own process.
4. Temporal: flicker (against Lanczos) and the error against the noise-free frames, per --temporal strength,
   on a 64x48 noisy pan over the astronaut (classical, 24 frames; fast, 10 frames).

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support.clips import pan_frames, write_clip  # noqa: E402  (test support: clips from real photos)


def _studio(args: list[str]) -> tuple[float, int]:
    """Run `python -m studio ARGS` in a fresh process: (seconds, peak resident KiB of that process)."""
    probe = (  # RSS polled in the process itself: ru_maxrss would keep the parent's peak across fork and exec
        "import runpy, sys, threading, time, psutil\n"
        "peak = [0]\n"
        "def watch():\n    me = psutil.Process()\n"
        "    while True:\n        peak[0] = max(peak[0], me.memory_info().rss)\n        time.sleep(0.02)\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        f"sys.argv = ['studio', *{args!r}]\n"
        "try:\n    runpy.run_module('studio', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('MAXRSS', peak[0] // 1024, file=sys.stderr)\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"studio {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    rss = int(done.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    return seconds, rss


def _frames_as_pngs(clip: Path, folder: Path) -> None:
    import av
    from PIL import Image

    folder.mkdir()
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(folder / f"{index:05d}.png")


def throughput(work: Path, args: argparse.Namespace) -> dict:
    frames = pan_frames(args.frames, args.width, args.height, step=1.0, noise=4)
    clip = write_clip(work / "clip.mp4", frames, rate=24)
    _frames_as_pngs(clip, work / "pngs")
    common = ["--engine", "fast", "--scale", "2", "--threads", str(args.threads), "--overwrite"]
    runs: dict[str, list[float]] = {"video": [], "video_temporal": [], "restore_pngs": []}
    for _ in range(args.repeats):
        runs["video"].append(_studio(["video", str(clip), "-o", str(work / "v.mp4"), "--temporal", "0", *common])[0])
        runs["restore_pngs"].append(_studio(["restore", str(work / "pngs"), "-o", str(work / "out"), *common])[0])
        runs["video_temporal"].append(_studio(["video", str(clip), "-o", str(work / "t.mp4"), *common])[0])
    best = {name: min(values) for name, values in runs.items()}
    return {
        "clip": f"{args.width}x{args.height}, {args.frames} frames, fast x2",
        "seconds_best": {k: round(v, 2) for k, v in best.items()},
        "fps_best": {k: round(args.frames / v, 3) for k, v in best.items()},
        "video_vs_restore_time": round(best["video"] / best["restore_pngs"], 3),
        "temporal_cost": round(best["video_temporal"] / best["video"] - 1, 3),
        "all_seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
    }


def overhead(work: Path, args: argparse.Namespace) -> dict:
    """Decode, restore and encode timed alone, then together as run_video overlaps them."""
    import av

    from studio.io import Picture
    from studio.runner import EngineCache, restore_picture
    from studio.video.codecs import encoder_spec, open_video_stream
    from studio.video.frames import decode_frames, quantise
    from studio.video.options import VideoOptions
    from studio.video.plan import plan_video
    from studio.video.run import run_video

    clip = work / "clip.mp4"
    cli = {"engine": "fast", "scale": 2.0, "threads": args.threads}
    vplan = plan_video(cli, clip, work / "overhead.mp4", VideoOptions(temporal=0.0, overwrite=True))
    started = time.perf_counter()
    decoded = [(frame.pts, frame.rgb) for frame in decode_frames(vplan.clip)]
    decode_s = time.perf_counter() - started
    cache = EngineCache(vplan.settings, vplan.plan.engine)
    started = time.perf_counter()
    restore_picture(Picture(rgb=decoded[0][1]), cache, cache.primary)  # load the model outside the timing
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = [(pts, restore_picture(Picture(rgb=rgb), cache, cache.primary).picture.rgb) for pts, rgb in decoded]
    restore_s = time.perf_counter() - started
    load_s = max(0.0, first_s - restore_s / len(decoded))
    spec = encoder_spec("h264", None, vplan.clip)
    started = time.perf_counter()
    with av.open(str(work / "encode_only.mp4"), "w") as container:
        stream = open_video_stream(container, spec, vplan.clip, vplan.output_size)
        for pts, rgb in restored:
            frame = av.VideoFrame.from_ndarray(quantise(rgb, vplan.clip), format="rgb24").reformat(format=spec.pix_fmt)
            frame.pts, frame.time_base = pts, vplan.clip.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    encode_s = time.perf_counter() - started
    run_video(vplan)  # warm: the model is converted and cached on disk
    vplan = plan_video(cli, clip, work / "overhead.mp4", VideoOptions(temporal=0.0, overwrite=True))
    started = time.perf_counter()
    result = run_video(vplan)
    whole_s = time.perf_counter() - started
    return {
        "decode_s": round(decode_s, 3),
        "restore_s": round(restore_s, 3),
        "encode_s": round(encode_s, 3),
        "decode_plus_encode_vs_restore": round((decode_s + encode_s) / restore_s, 3),
        "model_load_s": round(load_s, 3),
        "run_video_s": round(whole_s, 3),
        "run_video_less_model_load_vs_restore": round((whole_s - load_s) / restore_s, 3),
        "note": "run_video also runs the flicker measure (flow, Lanczos) and the final remux",
        "fps": round(result.fps, 3),
    }


def memory(work: Path, args: argparse.Namespace) -> dict:
    width, height = (int(v) for v in args.memory_size.split("x"))
    peaks = {}
    for seconds in (10, 60):
        clip = write_clip(work / f"m{seconds}.mp4", pan_frames(24 * seconds, width, height, step=0.25, noise=3))
        out = work / f"m{seconds}_out.mp4"
        wall, rss = _studio(["video", str(clip), "-o", str(out), "--engine", args.memory_engine, "--scale", "2"])
        peaks[f"{seconds}s"] = {"frames": 24 * seconds, "peak_rss_mb": round(rss / 1024, 1), "seconds": round(wall, 1)}
    peaks["ratio_60s_vs_10s"] = round(peaks["60s"]["peak_rss_mb"] / peaks["10s"]["peak_rss_mb"], 3)
    peaks["clip"] = f"{width}x{height} at 24 fps, {args.memory_engine} x2"
    return peaks


def temporal(work: Path, args: argparse.Namespace) -> list[dict]:
    """Flicker (vs Lanczos) and error against the noise-free pan, per --temporal strength and engine."""
    import numpy as np
    from support.clips import decoded

    from studio.video.options import VideoOptions
    from studio.video.plan import plan_video
    from studio.video.run import run_video

    rows = []
    for engine, frames, strengths in (("classical", 24, (0.0, 0.3, 0.5, 0.7, 0.9)), ("fast", 10, (0.0, 0.5))):
        clean = pan_frames(frames, 64, 48, step=1.0)
        clip = write_clip(
            work / f"pan_{engine}.mp4", pan_frames(frames, 64, 48, step=1.0, noise=6), options={"crf": "4"}
        )
        for strength in strengths:
            out = work / f"pan_{engine}_{strength}.mp4"
            cli = {"engine": engine, "scale": 2.0, "seed": 1, "threads": args.threads}
            result = run_video(plan_video(cli, clip, out, VideoOptions(temporal=strength, overwrite=True)))
            shrunk = [f.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3)) for _, f in decoded(out)]
            error = float(np.mean([np.abs(a - b).mean() for a, b in zip(shrunk, clean)]))
            rows.append(
                {
                    "engine": engine,
                    "frames": frames,
                    "temporal": strength,
                    "flicker": result.flicker,
                    "error_vs_clean_x255": round(error, 3),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-size", default="320x180")
    parser.add_argument("--memory-engine", default="classical")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "overhead", "memory", "temporal"])
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_clip(work / "clip.mp4", pan_frames(args.frames, args.width, args.height, step=1.0, noise=4))
        if "throughput" not in args.skip:
            results["throughput"] = throughput(Path(tempfile.mkdtemp(dir=folder)), args)
        if "overhead" not in args.skip:
            results["overhead"] = overhead(work, args)
        if "memory" not in args.skip:
            results["memory"] = memory(work, args)
        if "temporal" not in args.skip:
            results["temporal"] = temporal(work, args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
