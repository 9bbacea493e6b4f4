"""Video prediction throughput and memory (``mvcore predict``) on real 4-camera videos.

    python bench/bench_predict.py                      # train briefly on mouse4cam, then bench
    python bench/bench_predict.py --model-dir DIR      # bench an existing model directory
    python bench/bench_predict.py --untrained          # weights as initialised (no training)

The mouse4cam videos (4 views, 120 frames, 1280x1024, ../shared/data/mouse4cam/videos) are
re-encoded once (libx264 crf 18, identical settings) into sessions of the first N frames for
each ``--lengths`` value, so that only the length differs. Every measurement runs in a fresh
process: wall time of the prediction itself (model loading excluded), synchronised frame
sets per second (x 4 views = view-frames per second), and peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after predicting. A flat peak RSS
across lengths shows that frames are streamed, not loaded whole. A decode-only pass (PyAV
decode + resize + normalise, no network) shows how much of the time is video decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOUSE = REPO.parent / "shared" / "data" / "mouse4cam"
VIEWS = ["back", "mid", "side", "top"]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reencode(src: Path, dst: Path, frames: int) -> None:
    import av

    with av.open(str(src)) as reader, av.open(str(dst), mode="w") as writer:
        stream_in = reader.streams.video[0]
        stream = writer.add_stream("libx264", rate=stream_in.average_rate,
                                   options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height = stream_in.width, stream_in.height
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(reader.decode(stream_in)):
            if i == frames:
                break
            image = frame.to_ndarray(format="rgb24")
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                writer.mux(packet)
        for packet in stream.encode():
            writer.mux(packet)


def _prepare_model(args: argparse.Namespace, out: Path) -> None:
    """Write a model directory: trained briefly on mouse4cam, or untrained."""
    from mvcore.config.load import load_config

    overrides = [f"training.max_epochs={args.train_epochs}", "training.min_epochs=1",
                 "training.check_val_every_n_epoch=1", "eval.num_labeled_frame_plots=0"]
    config = load_config(REPO / "bench" / "configs" / "mouse4cam.yaml", overrides)
    if args.untrained:
        _untrained_model_dir(config, out)
        return
    from mvcore.workflow import train

    start = time.perf_counter()
    train(config, output_dir=str(out))
    print(f"trained {args.train_epochs} epoch(s) on mouse4cam in "
          f"{time.perf_counter() - start:.0f} s -> {out}")


def _model(args: argparse.Namespace, work: Path) -> Path:
    """The model directory to bench; built in a child process so that this parent stays small
    (Linux children inherit the parent's ru_maxrss high-water mark)."""
    if args.model_dir:
        return Path(args.model_dir)
    out = work / "model"
    command = [sys.executable, __file__, "--prepare", str(out), "--train-epochs",
               str(args.train_epochs)] + (["--untrained"] if args.untrained else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"model: {out}")
    return out


def _untrained_model_dir(config, out: Path) -> Path:
    """The files `mvcore train` writes that prediction reads, with initial weights."""
    import torch
    import yaml

    from mvcore.build import build_backbone, make_context, select_backbone
    from mvcore.config.load import dump_config
    from mvcore.data.project import MultiviewProject
    from mvcore.plugin.components import load_components
    from mvcore.training.module import MultiviewPoseModule

    project = MultiviewProject.from_config(config)
    context = make_context(config, project)
    backbone = build_backbone(select_backbone(config, load_components(), context), context)
    module = MultiviewPoseModule(config, backbone, context)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    data = dump_config(config)  # Lightning Pose's shape: model.backbone etc. back in place
    data["data"]["data_dir"] = str(project.root)
    (out / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (out / "context.json").write_text(json.dumps(context.to_json()))
    torch.save({"state_dict": module.state_dict()}, out / "checkpoints" / "best.ckpt")
    return out


def _worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from mvcore.data.sessions import CalibrationResolver, find_sessions
    from mvcore.predict import decoding, video

    baseline = _rss_mib()
    if args.decode_only:
        (session,) = find_sessions(args.videos, VIEWS)
        start = time.perf_counter()
        for frames in decoding.SessionReader(session, args.batch_size):
            decoding.frames_to_model_input(frames, (128, 128))
        seconds = time.perf_counter() - start
        frames = session.num_frames
        loaded = baseline
    else:
        from mvcore.predict.model_io import load_model

        module, config = load_model(args.worker, device="cpu")
        loaded = _rss_mib()
        (session,) = find_sessions(args.videos, VIEWS)
        found = CalibrationResolver(config, VIEWS).for_session(session.name)
        cameras = found.group.to_tensors(dtype=torch.float64) if found else None
        start = time.perf_counter()
        video.predict_session(module, session, args.batch_size, args.precision, cameras,
                              progress=False)
        seconds = time.perf_counter() - start
        frames = session.num_frames
    print(json.dumps({"frames": frames, "seconds": seconds, "rss_start": baseline,
                      "rss_loaded": loaded, "rss_peak": _rss_mib()}))


def _measure(args: argparse.Namespace, model_dir: Path | None, videos: Path,
             decode_only: bool = False) -> dict:
    command = [sys.executable, __file__, "--videos", str(videos),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--precision", args.precision]
    command += ["--decode-only", "--worker", "-"] if decode_only else ["--worker", str(model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per row (best is shown)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--videos", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return 0
    if args.prepare:
        _prepare_model(args, Path(args.prepare))
        return 0

    work = Path(tempfile.mkdtemp(prefix="mvcore_bench_predict_"))
    model_dir = _model(args, work)
    sessions = {}
    for length in args.lengths:
        folder = work / f"videos_{length}"
        folder.mkdir()
        for view in VIEWS:
            _reencode(MOUSE / "videos" / f"minimal_{view}.mp4", folder / f"minimal_{view}.mp4",
                      length)
        sessions[length] = folder
    print(f"model: {model_dir} ({'untrained' if args.untrained else 'trained'}); batch "
          f"{args.batch_size}, precision {args.precision}, {args.threads} torch threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| frames | what | wall s | frame sets/s | view-frames/s | RSS after load MiB | "
          "peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for folder in sessions.values():
        for what, decode_only in (("decode + resize only", True), ("predict (2D + 3D)", False)):
            runs = [_measure(args, model_dir, folder, decode_only) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["seconds"])
            rate = best["frames"] / best["seconds"]
            print(f"| {best['frames']} | {what} | {best['seconds']:.2f} | {rate:.1f} | "
                  f"{rate * len(VIEWS):.1f} | {best['rss_loaded']:.0f} | "
                  f"{max(r['rss_peak'] for r in runs):.0f} |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
