"""``mvcore predict --devices 2``: two CPU processes (gloo) write what one process writes,
byte for byte; a re-run skips every session; the output folder is held for the whole run; a
process that dies or crashes fails the run naming its session, without leaving the other
waiting; the same command under torchrun's variables. Each run is the CLI in-process; the
second process is forked, so it inherits the tiny test model (``predict_models``)."""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from predict_models import VIEWS, csv_bytes, partial_files, predict_cli
from videos import write_video

import mvcore.predict.distributed as distributed
import mvcore.predict.video as video
from mvcore.data.sessions import VideoSession
from mvcore.data.videos import VideoInfo
from mvcore.errors import ConfigError
from mvcore.files import DirectoryLock, Manifest
from mvcore.predict.distributed import (
    LaunchError,
    Rank,
    _check_world,
    assign_sessions,
    rank_device,
    rank_from_env,
)

SESSIONS = {"s1": 9, "s2": 12, "s3": 6}  # frames; s1 is the fixture's
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
            "MASTER_PORT")


@pytest.fixture
def three_sessions(model_dir, monkeypatch):
    """The fixture's model with sessions s1 (9 frames), s2 (12) and s3 (6), one torch thread
    (the same in every process, so the same float rounding; torchrun sets OMP_NUM_THREADS=1
    too), and watchdogs: a run that waits for a process more than a minute, or runs two,
    fails the test."""
    videos = model_dir.parent / "project" / "videos"
    rng = np.random.default_rng(11)
    for name in ("s2", "s3"):
        for view in VIEWS:
            frames = (rng.random((SESSIONS[name], 48, 64, 3)) * 255).astype(np.uint8)
            write_video(videos / f"{name}_{view}.mp4", frames)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(distributed, "FINISH_TIMEOUT", datetime.timedelta(seconds=60))
    monkeypatch.setattr(distributed, "RENDEZVOUS_TIMEOUT", datetime.timedelta(seconds=60))

    def hung(*_: object) -> None:
        raise TimeoutError("the distributed run hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield model_dir
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
    torch.set_num_threads(threads)


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _done(out: Path) -> dict[str, tuple]:
    """The manifests of ``out`` by session: inputs, settings and outputs (relative to
    ``out``; with the size of each CSV, not of the labelled videos, which the encoder does
    not make byte for byte the same)."""
    found = {}
    for path in sorted((out / ".mvcore").glob("*.json")):
        manifest = Manifest.read(path)
        outputs = {str(Path(p).relative_to(out.resolve())): size if p.endswith(".csv") else 0
                   for p, size in manifest.outputs.items()}
        found[path.stem] = (manifest.inputs, manifest.settings, outputs)
    return found


@contextlib.contextmanager
def _hook(action: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``action(session name)`` runs in whichever process predicts a
    session, before it does."""
    real = video.predict_session

    def hooked(module, session, *args, **kwargs):
        action(session.name)
        return real(module, session, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(video, "predict_session", hooked)
        yield


def _second_predict(model_dir: Path, out: Path, record: Path):
    """A hook that runs a second, independent ``mvcore predict`` into ``out`` once in each
    process of the run and records its exit code by process id."""
    def action(_: str) -> None:
        mark = record / str(os.getpid())
        if not mark.exists():
            ours = {k: os.environ.pop(k) for k in TORCHRUN if k in os.environ}
            mark.write_text(str(predict_cli(model_dir, "--out", str(out))))
            os.environ.update(ours)  # (a process of its own would not have them)
    return action


def test_two_processes_write_what_one_writes_hold_the_folder_and_a_rerun_skips_all(
        three_sessions, tmp_path, capfd):
    model_dir = three_sessions
    one, two = tmp_path / "one", tmp_path / "two"
    assert predict_cli(model_dir, "--out", str(one), "--labeled-video") == 0
    capfd.readouterr()
    record = tmp_path / "second"
    record.mkdir()
    with _hook(_second_predict(model_dir, two, record)):
        assert predict_cli(model_dir, "--out", str(two), "--labeled-video", "--devices",
                           "2") == 0
    printed = capfd.readouterr()
    out, err = printed.out, printed.err
    # rank 0 shares the sessions out by size (largest first, to the least loaded) and says so
    assert "3 session(s) to predict by 2 processes: rank 0: s2 (12 frames); rank 1: s1, s3 " \
        "(15 frames)" in out
    for rank, name in ((0, "s2"), (1, "s1"), (1, "s3")):
        assert len(re.findall(rf"\[rank {rank}/2\] predicted session {name}: ", out)) == 1, out
    assert len(re.findall(r"predicted session s\d", out)) == 3  # each session once
    assert "3 session(s) predicted by 2 processes, 0 skipped" in out  # both processes counted
    # the same bytes and manifests as one process
    assert csv_bytes(two) == csv_bytes(one)
    assert _done(two) == _done(one) and sorted(_done(two)) == sorted(SESSIONS)
    for name, frames in SESSIONS.items():
        for view in VIEWS:
            path = f"labeled_videos/{name}_{view}_labeled.mp4"
            assert _frames(two / path) == _frames(one / path) == frames
    assert partial_files(two) == []
    # a second mvcore predict into the folder was refused in both processes, while they ran
    codes = {int(p.name): p.read_text() for p in record.iterdir()}
    assert len(codes) == 2 and os.getpid() in codes and set(codes.values()) == {"2"}
    # (no line end in the pattern: the two processes share stderr, and print writes a message
    # and its newline separately, so the other process's line may come between them)
    refused = re.findall(rf"error: {re.escape(str(two))} is in use by mvcore predict \(pid "
                         rf"{os.getpid()} on .+?\); wait until it finishes \(or stop it\) and "
                         r"run predict again", err)
    assert len(refused) == 2, err

    def written() -> dict[Path, int]:  # every output (the lock file is rewritten each run)
        return {p: p.stat().st_mtime_ns for p in two.rglob("*") if p.name != ".mvcore.lock"}

    before = written()
    assert predict_cli(model_dir, "--out", str(two), "--devices", "2") == 0
    assert "0 session(s) predicted, 3 skipped" in capfd.readouterr().out
    assert written() == before and len(before) == 3 * (1 + 4 + 1 + 4) + 2


def test_a_folder_in_use_refuses_the_run_before_any_process_starts(three_sessions, capfd):
    out = three_sessions / "video_preds"
    with DirectoryLock(out, "predict"):
        assert predict_cli(three_sessions, "--devices", "2") == 2
    err = capfd.readouterr().err
    assert re.fullmatch(rf"error: {re.escape(str(out))} is in use by mvcore predict \(pid "
                        rf"{os.getpid()} on .+\); wait until it finishes \(or stop it\) and run "
                        r"predict again\n", err), err
    assert sorted(p.name for p in out.iterdir()) == [".mvcore.lock"]
    assert multiprocessing.active_children() == []


def test_a_process_killed_fails_the_run_at_once_naming_its_session_and_a_rerun_resumes(
        three_sessions, tmp_path, capfd):
    model_dir, out = three_sessions, three_sessions / "video_preds"
    parent = os.getpid()

    def die(name: str) -> None:
        if os.getpid() != parent and name == "s1":
            os.kill(os.getpid(), signal.SIGKILL)

    with _hook(die):
        assert predict_cli(model_dir, "--devices", "2") == 1
    err = capfd.readouterr().err
    assert err.splitlines()[-1] == (
        "error: rank 1 of 2 ended (killed by signal 9) while it predicted session s1; the "
        f"sessions completed are kept, with their manifests, in {out}; run mvcore predict "
        "again to predict the rest"), err
    assert "Traceback" not in err
    assert sorted(_done(out)) == ["s2"]  # rank 0's session, complete
    assert multiprocessing.active_children() == []

    assert predict_cli(model_dir, "--devices", "2") == 0
    printed = capfd.readouterr().out
    assert "2 session(s) to predict by 2 processes: rank 0: s1 (9 frames); rank 1: s3 " \
        "(6 frames)" in printed
    assert "2 session(s) predicted by 2 processes, 1 skipped" in printed
    assert predict_cli(model_dir, "--out", str(tmp_path / "one")) == 0
    assert csv_bytes(out) == csv_bytes(tmp_path / "one") and partial_files(out) == []


def test_processes_started_after_torch_work_in_the_parent_use_their_threads(
        three_sessions, tmp_path, capfd):
    """A parent that ran a parallel torch operation (an OpenMP pool of 4 threads) starts two
    processes of 2 threads each: they predict (a forked main thread would hang in its first
    parallel operation) what one process predicts."""
    torch.set_num_threads(4)
    torch.ones(256, 256) @ torch.ones(256, 256)  # the parent's OpenMP pool exists
    out = tmp_path / "two"
    assert predict_cli(three_sessions, "--out", str(out), "--devices", "2") == 0
    printed = capfd.readouterr().out
    assert "starting rank 1 (fork): 2 processes on the CPU, 2 torch thread(s) each" in printed
    assert "3 session(s) predicted by 2 processes, 0 skipped" in printed
    assert torch.get_num_threads() == 4  # the parent's again
    torch.set_num_threads(2)  # the threads of each process: the same rounding
    assert predict_cli(three_sessions, "--out", str(tmp_path / "one")) == 0
    assert csv_bytes(out) == csv_bytes(tmp_path / "one")


def test_an_error_in_one_process_names_its_session_after_the_others_finish(
        three_sessions, capfd):
    model_dir, out = three_sessions, three_sessions / "video_preds"

    def fail(name: str) -> None:
        if name == "s3":
            raise RuntimeError("CUDA out of memory (simulated)")

    with _hook(fail):
        assert predict_cli(model_dir, "--devices", "2") == 1
    err = capfd.readouterr().err
    assert "Traceback" in err  # the failing process's own, for a bug report
    assert err.splitlines()[-1] == (
        "error: rank 1 of 2 failed while predicting session s3: RuntimeError: CUDA out of "
        "memory (simulated); the sessions completed are kept, with their manifests, in "
        f"{out}; run mvcore predict again to predict the rest")
    assert sorted(_done(out)) == ["s1", "s2"]


def _torchrun_rank(rank: int, port: int, argv: list[str]) -> None:
    """One process as torchrun starts it: its variables, then the command."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    sys.exit(predict_cli(*argv))


def test_under_torchrun_each_process_is_one_rank_and_rank_0_holds_the_folder(
        three_sessions, tmp_path, capfd):
    model_dir, out = three_sessions, tmp_path / "two"
    assert predict_cli(model_dir, "--out", str(tmp_path / "one")) == 0
    capfd.readouterr()
    record = tmp_path / "second"
    record.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    argv = [str(model_dir), "--out", str(out), "--devices", "2", "--num-nodes", "1"]
    ranks = [context.Process(target=_torchrun_rank, args=(r, port, argv)) for r in (0, 1)]
    with _hook(_second_predict(model_dir, out, record)):
        for process in ranks:
            process.start()
        for process in ranks:
            process.join()
    printed = capfd.readouterr()
    assert [p.exitcode for p in ranks] == [0, 0], printed.err
    assert "3 session(s) predicted by 2 processes, 0 skipped" in printed.out
    assert printed.out.count("session(s) predicted") == 1  # rank 0 reports, for both
    assert csv_bytes(out) == csv_bytes(tmp_path / "one")
    assert _done(out) == _done(tmp_path / "one")
    codes = {int(p.name): p.read_text() for p in record.iterdir()}
    assert sorted(codes) == sorted(p.pid for p in ranks) and set(codes.values()) == {"2"}
    holder = ranks[0].pid  # rank 0 took the lock; rank 1 writes under it
    assert len(re.findall(rf"is in use by mvcore predict \(pid {holder} on ", printed.err)) == 2


RUNNER = """import sys
from predict_models import predict_cli, use_tiny_components
use_tiny_components()
sys.exit(predict_cli(*sys.argv[1:]))
"""


@pytest.mark.slow
def test_real_torchrun_shares_the_sessions_through_its_agents_store(three_sessions, tmp_path):
    """torchrun itself (two fresh processes, its agent's rendezvous store): the same bytes as
    one process, rank 0's summary, nothing refused or retried."""
    model_dir, out = three_sessions, tmp_path / "two"
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    helpers = str(Path(__file__).parents[2] / "helpers")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN}
    env["PYTHONPATH"] = os.pathsep.join([helpers, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", str(runner), str(model_dir), "--out", str(out), "--devices", "2"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 session(s) predicted by 2 processes, 0 skipped" in done.stdout
    assert "failed to bind" not in done.stderr  # every process a client of the agent's store
    assert predict_cli(model_dir, "--out", str(tmp_path / "one")) == 0
    assert csv_bytes(out) == csv_bytes(tmp_path / "one")
    assert _done(out) == _done(tmp_path / "one")


# ----------------------------------------------------------------------------- the parts


def test_launcher_variables_give_the_rank():
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                "MASTER_ADDR": "node7", "MASTER_PORT": "29500"}
    assert rank_from_env(torchrun) == Rank(3, 8, 1, 4, "torchrun", "node7", 29500)
    srun = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8",
            "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
            "SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "1234567"}
    assert rank_from_env(srun) == Rank(5, 8, 1, 4, "srun", "gpu03", 17000 + 4567)
    assert rank_from_env({**srun, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}) == \
        Rank(5, 8, 1, 4, "srun", "10.0.0.1", 1234)
    # alone: no launcher, a launcher of one, the batch script around srun, salloc's shell
    assert rank_from_env({}) is None
    assert rank_from_env({**torchrun, "RANK": "0", "WORLD_SIZE": "1"}) is None
    assert rank_from_env({**srun, "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert rank_from_env({**srun, "SLURM_JOB_NAME": "interactive"}) is None
    batch = {k: v for k, v in srun.items() if not k.startswith("SLURM_STEP_")}
    assert rank_from_env({**batch, "SLURM_PROCID": "0"}) is None  # sbatch's script, no srun
    with pytest.raises(LaunchError, match=r"^RANK and WORLD_SIZE are set but MASTER_ADDR or "
                                          r"MASTER_PORT is not"):
        rank_from_env({"RANK": "1", "WORLD_SIZE": "2"})
    with pytest.raises(LaunchError, match=r"^environment variable WORLD_SIZE='two' is not a "
                                          r"whole number"):
        rank_from_env({**torchrun, "WORLD_SIZE": "two"})


def test_devices_and_nodes_must_match_the_processes_started():
    rank = Rank(0, 8, 0, 4, "srun")
    _check_world(rank, None, None)  # not given: the launcher decides
    _check_world(rank, 4, 2)
    with pytest.raises(LaunchError) as caught:
        _check_world(rank, 4, None)
    assert str(caught.value) == (
        "--devices 4 --num-nodes 1 asks for 4 processes but srun started 8; start one process "
        "per device on every node (srun --nodes=M --ntasks-per-node=N) or pass the matching "
        "--devices and --num-nodes")


def test_num_nodes_without_a_launcher_is_one_line(three_sessions, capfd):
    assert predict_cli(three_sessions, "--num-nodes", "2") == 2
    assert capfd.readouterr().err == (
        "error: --num-nodes 2: the processes of other nodes must be started there, by srun or "
        "torchrun, with this same command (docs/cluster.md)\n")


def _session(name: str, frames: int, width: int = 64) -> VideoSession:
    infos = [VideoInfo(Path(f"{name}_{v}.mp4"), frames, Fraction(10), 48, width) for v in VIEWS]
    return VideoSession(name, VIEWS, infos, frames)


def test_sessions_are_shared_out_by_size_the_same_way_every_time():
    sessions = [_session("a", 100), _session("b", 60), _session("c", 50), _session("d", 40),
                _session("e", 10, width=640)]  # e: 10 frames of 10x the pixels = 100
    owners = assign_sessions(sessions, 2)
    assert owners == [0, 0, 1, 1, 1]  # a, e, then b to rank 0 (a tie), c and d to rank 1
    loads = [sum(s.num_frames * s.videos[0].width for s, o in zip(sessions, owners) if o == r)
             for r in (0, 1)]
    assert max(loads) - min(loads) <= 40 * 64  # within the smallest session
    assert assign_sessions(sessions, 2) == owners  # deterministic
    assert assign_sessions(list(reversed(sessions)), 2) == owners[::-1]  # not order-bound
    assert assign_sessions(sessions, 9) == [0, 2, 3, 4, 1]  # ties: the lower rank


def test_each_process_gets_its_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert rank_device(None, 1, 2) == "cpu"  # no GPU
    assert rank_device("cpu", 1, 2) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [rank_device(None, r, 4) for r in range(4)] == [f"cuda:{r}" for r in range(4)]
    assert rank_device("cuda", 2, 4) == "cuda:2"
    with pytest.raises(LaunchError, match=r"^8 processes on this node but it has 4 GPU\(s\); "
                                          r"use --devices 4 \(one process per GPU\)"):
        rank_device(None, 0, 8)
    with pytest.raises(ConfigError, match=r"^--device cuda:1 names one device, but each "
                                          r"process of the run uses its own"):
        rank_device("cuda:1", 0, 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a GPU bound to the process
    assert rank_device(None, 3, 4, own_gpu=True) == "cuda:0"
    with pytest.raises(LaunchError):  # --devices 2 on one GPU: one process per GPU
        rank_device(None, 1, 2)
