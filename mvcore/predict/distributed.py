"""Prediction by several processes: ``mvcore predict --devices N [--num-nodes M]``.

Sessions are the unit of work. Rank 0 decides what is predicted, once: it reads the model's
config, finds the sessions, locks the output folder and compares each session's manifest
(``mvcore.predict.video``). The sessions that are not up to date are shared out by size
(frames x pixels of all views; the largest first, each to the process with the least work so
far, the lower rank on ties: ``assign_sessions``), so every session is predicted by exactly
one process, which writes its outputs and then its manifest, as one process would: the same
bytes (on a CPU). At the end every process sends what it did to the others
(``all_gather_object``); rank 0 logs it and reports every failed session.

How the processes start (``docs/cluster.md``):

- ``--devices N`` without a launcher: this process is rank 0; after it has planned (before it
  loads a model or touches CUDA) it starts ranks 1..N-1 by ``fork``, at most one per session
  to predict. Rank r uses ``cuda:r``, or the CPU, where the N processes share this process's
  torch threads; each forked rank runs in a new thread (``_forked_rank``: OpenMP). They
  inherit its lock on the output folder, so a second ``mvcore predict`` into it is refused
  until the last of them has ended.
- under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``) or ``srun`` (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` or
  ``SLURM_NTASKS``, ``SLURM_LOCALID``; rank 0's host is the first of the job's nodes and the
  port 17000 + the job id's last four digits, unless ``MASTER_ADDR`` / ``MASTER_PORT`` are
  set) each process is one rank, on ``cuda:<local rank>``, and rank 0 holds the lock (the
  output folder must be one that every node sees). A SLURM batch script outside ``srun`` is
  one process alone, where ``--devices`` starts the others.
  ``--devices`` x ``--num-nodes``, when given, must be the number of processes.

``torch.distributed`` with the gloo backend, on CPU and GPU machines alike: the processes
exchange a few small Python objects (the plan at the start, what each did at the end) and no
tensors, so neither NCCL nor Lightning's DDP (which wraps a model for training) is needed;
gloo notices at once that a process died (its connections close) and keeps its timeouts.
Lightning Fabric's launchers were not used: one re-runs ``sys.argv`` (wrong when predict is
called from Python, as ``mvcore train`` does) and the other turns a process's failure into a
traceback instead of the run's one-line errors.

Failures: a session whose video fails part-way is reported as by one process (the other
sessions are predicted; exit 2, one line per session). An unexpected error in a process
stops that process's sessions (it prints the traceback), the others finish theirs, and the run
fails with ``RankFailed`` naming the session. A process that dies (killed, out of memory) is
noticed by the others when they finish: the run fails naming the session it was predicting
(each process notes it in the rendezvous store first); with ``--devices`` the processes still
running are stopped then. The sessions that were complete keep their manifests, so the same
command again predicts only the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mvcore.data.sessions import VideoSession
from mvcore.data.triangulate import DEFAULT_CONFIDENCE_THRESHOLD
from mvcore.errors import ConfigError, DataError, MvcoreError
from mvcore.files import DirectoryLock
from mvcore.predict.video import (
    PredictionPlan,
    SessionJob,
    SessionResult,
    SessionTask,
    plan_prediction,
    predict_videos,
    session_tasks,
    skip_session,
)

__all__ = [
    "DistributedRun",
    "LaunchError",
    "Rank",
    "RankFailed",
    "assign_sessions",
    "predict_distributed",
    "rank_from_env",
]

#: how long the processes wait for each other to start (and rank 0's address to answer)
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=5)
#: how long a process that finished waits for the others (one that dies is noticed at once)
FINISH_TIMEOUT = datetime.timedelta(hours=24)
#: how long rank 0 waits for the processes it started to exit after the run
_EXIT_WAIT_S = 60.0
#: the port of rank 0 under srun without MASTER_PORT: this + the job id's last four digits
SLURM_PORT_BASE = 17000


class LaunchError(MvcoreError):
    """The processes of a run cannot start or meet: launcher variables that do not match
    ``--devices`` / ``--num-nodes``, a process that never came, rank 0 out of reach."""


class RankFailed(RuntimeError):
    """A process of a run crashed or died; the message names the session it was predicting
    (``mvcore predict`` prints it as one line and exits 1)."""


@dataclass(frozen=True)
class Rank:
    """One process of a run: its rank, the number of processes, its place on its node and
    where rank 0 listens."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "mvcore" (--devices), "torchrun" or "srun"
    address: str = "127.0.0.1"
    port: int = 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


@dataclass
class DistributedRun:
    """What ``predict_distributed`` did. ``results``: every session of the run on the main
    process (rank 0), this process's own elsewhere; ``exit_code``: what a process that is not
    the main one exits with (the main one raises instead)."""

    results: list[SessionResult]
    is_main: bool = True
    processes: int = 1
    exit_code: int = 0


# ----------------------------------------------------------------------------- who am I


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise LaunchError(f"environment variable {name}={value!r} is not a whole number; "
                          "it is set by torchrun or srun, do not set it by hand") from None


def _leading_int(value: str) -> int:
    """``"4(x2)"`` (SLURM's tasks per node) -> 4."""
    found = re.match(r"\s*(\d+)", value)
    return int(found.group(1)) if found else 1


def _first_node(nodes: str) -> str:
    """The first host of a SLURM node list (``node[03-05,07],gpu1`` -> ``node03``)."""
    # lazy: Lightning's parser of SLURM node lists, only needed under srun
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.resolve_root_node_address(nodes)


def rank_from_env(environ: Mapping[str, str] | None = None) -> Rank | None:
    """This process's rank when a launcher started several (torchrun's variables first, then
    an ``srun`` step's); None when it runs alone (no launcher, a launcher of one, or the
    batch script of a SLURM job outside ``srun``)."""

    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _env_int(env, "WORLD_SIZE")
        rank = _env_int(env, "RANK")
        local = _env_int(env, "LOCAL_RANK", rank)
        local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
        launcher = "torchrun"
        address, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
        if world > 1 and (not address or not port):
            raise LaunchError("RANK and WORLD_SIZE are set but MASTER_ADDR or MASTER_PORT is "
                              "not: set them to rank 0's host and a free port (torchrun sets "
                              "all four)")
    elif "SLURM_PROCID" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        # the tasks of this srun step; the batch script itself (no step variables, while
        # SLURM_NTASKS counts the whole allocation's tasks) is one process alone
        world = _env_int(env, "SLURM_STEP_NUM_TASKS", 1)
        rank = _env_int(env, "SLURM_PROCID")
        local = _env_int(env, "SLURM_LOCALID", 0)
        local_world = _leading_int(env.get("SLURM_STEP_TASKS_PER_NODE")
                                   or env.get("SLURM_TASKS_PER_NODE") or "1")
        launcher = "srun"
        address = env.get("MASTER_ADDR")
        if not address and world > 1:
            nodes = (env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
                     or env.get("SLURM_NODELIST") or "127.0.0.1")
            address = _first_node(nodes)
        job = re.sub(r"\D", "", env.get("SLURM_JOB_ID", ""))
        port = env.get("MASTER_PORT") or str(SLURM_PORT_BASE + int(job[-4:] or 0))
    else:
        return None
    if world <= 1:
        return None
    if not 0 <= rank < world or not 0 <= local < max(local_world, 1):
        raise LaunchError(f"{launcher} started process {rank} (local {local}) of {world}: "
                          "out of range; check the launcher's variables")
    port_number = _env_int({"MASTER_PORT": str(port)}, "MASTER_PORT")
    return Rank(rank, world, local, local_world, launcher, str(address), port_number)


def _check_world(rank: Rank, devices: int | None, num_nodes: int | None) -> None:
    """``--devices`` x ``--num-nodes`` (when given) must be the launcher's process count."""
    if devices is None and num_nodes is None:
        return
    wanted = (devices or 1) * (num_nodes or 1)
    if wanted != rank.world_size:
        asked = f"--devices {devices or 1} --num-nodes {num_nodes or 1}"
        how = ("srun --nodes=M --ntasks-per-node=N" if rank.launcher == "srun"
               else "torchrun --nnodes=M --nproc-per-node=N")
        raise LaunchError(f"{asked} asks for {wanted} processes but {rank.launcher} started "
                          f"{rank.world_size}; start one process per device on every node "
                          f"({how}) or pass the matching --devices and --num-nodes")


def rank_device(device: str | None, local_rank: int, local_ranks: int,
                own_gpu: bool = False) -> str:
    """The torch device of the process ``local_rank`` of a node: ``cuda:<local rank>`` by
    default (the CPU without GPUs), or ``--device``'s type with the local rank as index.
    ``own_gpu`` (a process started by a launcher): a process that sees one GPU only uses it
    (``srun --gpus-per-task=1``, ``--gpu-bind`` or ``CUDA_VISIBLE_DEVICES`` per process).
    Does not initialise CUDA (``device_count`` asks NVML), so a process may fork after it."""
    if device is None:
        if torch.cuda.device_count() == 0:
            return "cpu"
        kind = torch.device("cuda")
    else:
        try:
            kind = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"--device {device!r}: not a torch device (cpu, cuda, ...)"
                              ) from None
        if kind.type == "cpu":
            return "cpu"
        if kind.index is not None:
            raise ConfigError(f"--device {device} names one device, but each process of the "
                              f"run uses its own; pass --device {kind.type} (process r uses "
                              f"{kind.type}:<r on its node>)")
    gpus = torch.cuda.device_count() if kind.type == "cuda" else local_ranks
    if own_gpu and gpus == 1:
        return f"{kind.type}:0"
    if local_ranks > gpus:
        raise LaunchError(f"{local_ranks} processes on this node but it has {gpus} GPU(s); "
                          f"use --devices {gpus} (one process per GPU) or --device cpu")
    return f"{kind.type}:{local_rank}"


# ----------------------------------------------------------------------------- the work


def _work_size(session: VideoSession) -> int:
    """What a session costs to predict: its frames times the pixels of all its views."""
    return session.num_frames * int(session.frame_sizes.prod(axis=1).sum())


def assign_sessions(sessions: list[VideoSession], processes: int) -> list[int]:
    """The rank that predicts each session: the largest first (by frames x pixels of all
    views, then by name), each to the process with the least work so far (the lower rank on
    ties). Deterministic: it depends only on the sessions and the number of processes."""
    load = [0] * processes
    owners = [0] * len(sessions)
    order = sorted(range(len(sessions)), key=lambda i: (-_work_size(sessions[i]),
                                                          sessions[i].name))
    for i in order:
        rank = min(range(processes), key=lambda r: (load[r], r))
        owners[i] = rank
        load[rank] += _work_size(sessions[i])
    return owners


@dataclass
class _Work:
    """What rank 0 decided and every process shares: the plan, the up-to-date sessions (their
    results) and the sessions to predict with the rank of each."""

    plan: PredictionPlan
    skipped: list[SessionResult]
    todo: list[SessionTask]
    owners: list[int]


@dataclass
class _Options:
    """The arguments of a run besides those of the plan."""

    batch_size: int
    overwrite: bool
    device: str | None
    progress: bool
    log: Callable[[str], None]


@dataclass
class _Outcome:
    """What one process did: its sessions' results, the one-line failures of sessions (a
    video that failed part-way), errors that stopped it (an ``MvcoreError``: one line; an
    unexpected exception: ``crash``, naming the session)."""

    rank: int
    results: list[SessionResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crash: str | None = None


def _prepare(plan: PredictionPlan, options: _Options) -> _Work:
    """Rank 0, the folder locked: which sessions are up to date (logged) and which are to
    predict (owners still to assign)."""
    skipped, todo = [], []
    for task in session_tasks(plan):
        if task.reason is None and not options.overwrite:
            skipped.append(skip_session(task, plan.out, options.log))
        else:
            todo.append(task)
    return _Work(plan, skipped, todo, [])


def _assign(work: _Work, processes: int, log: Callable[[str], None]) -> None:
    """Share the sessions to predict out among ``processes`` and log who predicts which."""
    work.owners = assign_sessions([t.session for t in work.todo], processes)
    parts = []
    for rank in range(processes):
        mine = [t.session for t, owner in zip(work.todo, work.owners) if owner == rank]
        frames = sum(s.num_frames for s in mine)
        names = ", ".join(s.name for s in mine) or "nothing"
        parts.append(f"rank {rank}: {names} ({frames} frames)")
    log(f"{len(work.todo)} session(s) to predict by {processes} processes: " + "; ".join(parts))


def _rank_log(rank: Rank, log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` with the rank in front of every line, flushed (the processes share stdout)."""

    def ranked(message: str) -> None:
        log(f"[rank {rank.rank}/{rank.world_size}] {message}")
        sys.stdout.flush()

    return ranked


def _predict_share(rank: Rank, store: Any, work: _Work, options: _Options) -> _Outcome:
    """Predict this process's sessions; every error is kept in the outcome (never raised, so
    no process waits for one that stopped). The session about to be predicted is noted in the
    store (``session/<rank>``; empty when done) for rank 0 to name should this process die."""
    outcome = _Outcome(rank.rank)
    mine = [t for t, owner in zip(work.todo, work.owners) if owner == rank.rank]
    log = _rank_log(rank, options.log)
    current = None
    try:
        device = rank_device(options.device, rank.local_rank, rank.local_world_size,
                             own_gpu=rank.launcher != "mvcore")
        job = SessionJob(work.plan, options.batch_size, device,
                         options.progress and rank.rank == 0, log)
        for task in mine:
            current = task.name
            store.set(f"session/{rank.rank}", task.name)
            result, failure = job.predict(task)
            outcome.results.append(result)
            if failure is not None:
                outcome.failures.append(failure)
        current = None
        store.set(f"session/{rank.rank}", "")
    except MvcoreError as exc:
        outcome.errors.append(str(exc))
    except Exception as exc:  # a bug, CUDA out of memory, rank 0 gone: named, not hidden
        traceback.print_exc()
        where = f"while predicting session {current}" if current else "before its sessions"
        outcome.crash = (f"{rank} failed {where}: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return outcome


def _combine(work: _Work, outcomes: list[_Outcome]) -> tuple[list[SessionResult], list[str],
                                                             int]:
    """Every session's result in the plan's order, the lines that report failures and the
    run's exit code (0; 2: failed sessions or input errors; 1: a process crashed)."""
    order = {s.name: i for i, s in enumerate(work.plan.sessions)}
    results = sorted([*work.skipped, *(r for o in outcomes for r in o.results)],
                     key=lambda r: order.get(r.session, len(order)))
    crashes = [o.crash for o in outcomes if o.crash]
    errors = list(dict.fromkeys(e for o in outcomes for e in o.errors))  # once each
    failures = [f for o in outcomes for f in o.failures]
    lines = crashes + errors + failures
    return results, lines, 1 if crashes else 2 if lines else 0


def _report(rank: Rank, work: _Work, outcomes: list[_Outcome]) -> DistributedRun:
    """After the gather: rank 0 returns every result or raises the run's failures (as one
    process would; ``RankFailed`` when a process crashed); the others return quietly."""
    results, lines, code = _combine(work, outcomes)
    if rank.rank != 0:
        mine = [r for o in outcomes if o.rank == rank.rank for r in o.results]
        return DistributedRun(mine, False, rank.world_size, code)
    if code == 1:
        crashes = sum(o.crash is not None for o in outcomes)
        lines[crashes - 1] += (f"; the sessions completed are kept, with their manifests, in "
                               f"{work.plan.out}; run mvcore predict again to predict the rest")
        raise RankFailed("\n".join(lines))
    if lines:
        raise DataError("\n".join(lines))
    return DistributedRun(results, True, rank.world_size)


def _lost(rank: Rank, store: Any, work: _Work, error: Exception,
          ended: Callable[[int], str | None]) -> DistributedRun:
    """A process ended before the gather. Rank 0 names the sessions of the processes that
    had not finished (``ended(r)``: how process r ended, None if it runs or is unknown); the
    others report only if rank 0 is gone too."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if rank.rank != 0:
        with contextlib.suppress(Exception):
            store.check(["session/0"])  # rank 0 answers: it will report
            return DistributedRun([], False, rank.world_size, 1)
        raise RankFailed(f"{rank}: rank 0 of the run ended before the run finished ({detail}); "
                         f"the sessions completed are kept, with their manifests, in "
                         f"{work.plan.out}; run mvcore predict again to predict the rest")
    lost = []
    for other in range(1, rank.world_size):
        try:
            current = store.get(f"session/{other}").decode() \
                if store.check([f"session/{other}"]) else None
        except Exception:  # the store is this process's own; never fail the report on it
            current = None
        if current == "":
            continue  # it finished and waited for the others
        how = ended(other)
        doing = f"while it predicted session {current}" if current else \
            "before its first session"
        state = f"ended ({how})" if how else "had not finished"
        lost.append(f"rank {other} of {rank.world_size} {state} {doing}")
    if not lost:
        lost = [f"a process of the run ended before it reported ({detail})"]
    raise RankFailed(f"{'; '.join(lost)}; the sessions completed are kept, with their "
                     f"manifests, in {work.plan.out}; run mvcore predict again to predict the "
                     "rest")


# ----------------------------------------------------------------------------- a process


def _join(rank: Rank, store: Any) -> None:
    """Join the process group (gloo, through ``store``), or say why not in one line."""
    try:
        dist.init_process_group("gloo", store=dist.PrefixStore("gloo", store), rank=rank.rank,
                                world_size=rank.world_size, timeout=FINISH_TIMEOUT)
    except RuntimeError as exc:
        raise LaunchError(f"{rank}: the processes of the run could not connect "
                          f"({str(exc).strip().splitlines()[0]}); if the machine has several "
                          "network interfaces, set GLOO_SOCKET_IFNAME to the one the nodes "
                          "share") from None


def _agent_store(rank: Rank) -> str | None:
    """torchrun's agent serves a store at ``MASTER_ADDR:MASTER_PORT`` for its processes
    (``TORCHELASTIC_USE_AGENT_STORE``): the prefix of this attempt's keys there (a restarted
    run must not read the keys of the attempt before), else None."""
    env = os.environ
    if (env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and rank.launcher == "torchrun"
            and env.get("MASTER_ADDR") == rank.address
            and env.get("MASTER_PORT") == str(rank.port)):
        return f"mvcore-predict/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return None


def _store(rank: Rank, listen_fd: int | None = None) -> Any:
    """The rendezvous store: rank 0 serves it (``listen_fd``: a socket it already listens
    on), the others connect to it (all of them, to torchrun's agent's store where it serves
    one); one line when the processes do not meet."""
    agent = _agent_store(rank)
    try:
        store = dist.TCPStore(rank.address, rank.port, rank.world_size,
                              rank.rank == 0 and agent is None, timeout=RENDEZVOUS_TIMEOUT,
                              master_listen_fd=listen_fd)
        return store if agent is None else dist.PrefixStore(agent, store)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0]
        seconds = int(RENDEZVOUS_TIMEOUT.total_seconds())
        if rank.rank == 0 and "in use" in detail.lower():
            raise LaunchError(f"{rank}: port {rank.port} is in use on this host ({detail}); "
                              "set MASTER_PORT to a free port") from None
        if rank.rank == 0:
            raise LaunchError(
                f"{rank}: waited {seconds} s at {rank.address}:{rank.port} for the other "
                f"{rank.world_size - 1} process(es) of the run ({detail}); start one process "
                "per device on every node with srun or torchrun, or run without a launcher "
                "and let --devices start them (docs/cluster.md)") from None
        raise LaunchError(f"{rank}: cannot reach rank 0 at {rank.address}:{rank.port} within "
                          f"{seconds} s ({detail}); check MASTER_ADDR / MASTER_PORT "
                          "(docs/cluster.md)") from None


def _run_rank(rank: Rank, store: Any, options: _Options, work: _Work | None,
              plan_args: dict[str, Any] | None = None,
              ended: Callable[[int], str | None] = lambda rank: None) -> DistributedRun:
    """One process of a run: join the others, get the work (``work``, or from rank 0, which
    plans with ``plan_args`` and holds the lock), predict its share, gather, report."""
    _join(rank, store)
    with contextlib.ExitStack() as stack:
        stack.callback(dist.destroy_process_group)
        if work is None:
            work = _share_work(rank, options, plan_args or {}, stack)
            if work is None:  # rank 0 could not plan; it says why
                return DistributedRun([], False, rank.world_size, 2)
        outcome = _predict_share(rank, store, work, options)
        outcomes: list[Any] = [None] * rank.world_size
        try:
            dist.all_gather_object(outcomes, outcome)
        except RuntimeError as exc:  # a process ended without reporting
            return _lost(rank, store, work, exc, ended)
        return _report(rank, work, outcomes)


def _share_work(rank: Rank, options: _Options, plan_args: dict[str, Any],
                stack: contextlib.ExitStack) -> _Work | None:
    """Under a launcher: rank 0 plans, locks the folder (until ``stack`` closes) and sends
    the work to the others; None on the others when rank 0 failed (it raises)."""
    box: list[Any] = [None]
    if rank.rank == 0:
        try:
            plan = plan_prediction(**plan_args)
            stack.enter_context(DirectoryLock(plan.out, "predict"))
            box[0] = _prepare(plan, options)
            _assign(box[0], rank.world_size, options.log)
        finally:
            dist.broadcast_object_list(box, src=0)
        return box[0]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- launching


def _exit_reason(process: Any) -> str | None:
    """How a started process ended (None while it runs)."""
    code = process.exitcode
    if code is None:
        return None
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _forked_rank(rank: Rank, listener: socket.socket, threads: int, options: _Options,
                 work: _Work) -> None:
    """The body of a process started by ``--devices``: one rank, its exit code the run's.

    The rank runs in a new thread: a forked main thread inherits the OpenMP (libgomp) thread
    pool of its parent's main thread without its threads, and hangs in its first parallel
    torch operation when the parent had run one (as after training, or any torch work, in
    the same Python process); a new thread starts a pool of its own."""
    listener.close()
    code = [1]  # an unexpected exception: its traceback is printed, the process exits 1

    def body() -> None:
        torch.set_num_threads(threads)
        try:
            code[0] = _run_rank(rank, _store(rank), options, work).exit_code
        except (MvcoreError, RankFailed) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code[0] = 2 if isinstance(exc, MvcoreError) else 1

    worker = threading.Thread(target=body, name=f"mvcore-predict-rank{rank.rank}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.5)  # (a join with a timeout lets Ctrl-C in)
    except KeyboardInterrupt:
        code[0] = 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code[0])


def _launch(work: _Work, processes: int, options: _Options) -> DistributedRun:
    """Rank 0 of a ``--devices`` run (the folder locked): fork ranks 1.., predict its share,
    report; the processes still running when it stops are stopped."""
    if torch.cuda.is_initialized():
        raise LaunchError("--devices starts its processes by fork, which CUDA does not survive, "
                          "and CUDA is already in use in this process; run mvcore predict "
                          "--devices from a fresh process, or under torchrun")
    if "fork" not in multiprocessing.get_all_start_methods():
        raise LaunchError("--devices N needs fork to start its processes, which this system "
                          "lacks; start them with torchrun (docs/cluster.md)")
    devices = [rank_device(options.device, local, processes) for local in range(processes)]
    nvml = getattr(torch.cuda, "_device_count_nvml", None)  # counts GPUs without CUDA
    if any(d.startswith("cuda") for d in devices) and nvml is not None and nvml() < 0:
        raise LaunchError("--devices could not count the GPUs without starting CUDA (NVML is "
                          "not available), and CUDA does not survive the fork that starts "
                          "the processes; start one process per GPU with torchrun or srun "
                          "(docs/cluster.md)")
    context = multiprocessing.get_context("fork")
    old_threads = torch.get_num_threads()
    threads = max(1, old_threads // processes)
    where = "the CPU" if set(devices) == {"cpu"} else ", ".join(devices)
    started = "rank 1" if processes == 2 else f"ranks 1-{processes - 1}"
    options.log(f"starting {started} (fork): {processes} processes on {where}, {threads} "
                "torch thread(s) each")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ranks = [Rank(r, processes, r, processes, "mvcore", "127.0.0.1", port)
             for r in range(processes)]
    children = [context.Process(target=_forked_rank, name=f"mvcore-predict-rank{r.rank}",
                                args=(r, listener, threads, options, work))
                for r in ranks[1:]]
    finished = False
    try:
        for child in children:
            child.start()
        torch.set_num_threads(threads)
        store = _store(ranks[0], listen_fd=listener.detach())

        def ended(rank: int) -> str | None:
            children[rank - 1].join(timeout=1.0)
            return _exit_reason(children[rank - 1])

        run = _run_rank(ranks[0], store, options, work, ended=ended)
        finished = True
        return run
    finally:
        torch.set_num_threads(old_threads)
        for child in children:
            if child.pid is None:
                continue
            child.join(timeout=_EXIT_WAIT_S if finished else 5.0)
            if child.is_alive():
                child.terminate()
                child.join()
        listener.close()


def predict_distributed(model_dir: str | Path, video_dir: str | Path | None = None,
                        session: str | None = None, out_dir: str | Path | None = None,
                        batch_size: int = 16, precision: str = "32",
                        labeled_video: bool = False, overwrite: bool = False,
                        checkpoint: str = "best",
                        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                        video_threshold: float | None = None,
                        calibration: str | Path | None = None, device: str | None = None,
                        devices: int | None = None, num_nodes: int | None = None,
                        progress: bool = True,
                        log: Callable[[str], None] = print) -> DistributedRun:
    """``predict_videos`` by ``devices`` processes per node on ``num_nodes`` nodes (module
    docstring): started here by fork (one node, no launcher), or by torchrun / srun (one
    process per device; this call is one of them). One process without either. Rank 0
    returns every session's result and raises what ``predict_videos`` raises, plus
    ``RankFailed`` when a process crashed or died; the others return quietly."""

    for name, value in (("--devices", devices), ("--num-nodes", num_nodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    plan_args = dict(model_dir=model_dir, video_dir=video_dir, session=session,
                     out_dir=out_dir, precision=precision, labeled_video=labeled_video,
                     checkpoint=checkpoint, confidence_threshold=confidence_threshold,
                     video_threshold=video_threshold, calibration=calibration)
    options = _Options(batch_size, overwrite, device, progress, log)
    rank = rank_from_env()
    if rank is not None:
        _check_world(rank, devices, num_nodes)
        return _run_rank(rank, _store(rank), options, None, plan_args)
    if (num_nodes or 1) > 1:
        raise LaunchError(f"--num-nodes {num_nodes}: the processes of other nodes must be "
                          "started there, by srun or torchrun, with this same command "
                          "(docs/cluster.md)")
    if (devices or 1) == 1:
        results = predict_videos(**plan_args, batch_size=batch_size, overwrite=overwrite,
                                 device=device, progress=progress, log=log)
        return DistributedRun(results)
    plan = plan_prediction(**plan_args)
    with DirectoryLock(plan.out, "predict"):
        work = _prepare(plan, options)
        processes = min(devices, len(work.todo))
        if processes <= 1:  # nothing, or one session: no process to start
            return _predict_here(work, options, device)
        _assign(work, processes, log)
        return _launch(work, processes, options)


def _predict_here(work: _Work, options: _Options, device: str | None) -> DistributedRun:
    """The sessions of ``work`` in this process, as ``predict_videos`` predicts them."""
    job = SessionJob(work.plan, options.batch_size, device, options.progress, options.log)
    results, failures = list(work.skipped), []
    for task in work.todo:
        result, failure = job.predict(task)
        results.append(result)
        if failure is not None:
            failures.append(failure)
    if failures:
        raise DataError("\n".join(failures))
    order = {s.name: i for i, s in enumerate(work.plan.sessions)}
    return DistributedRun(sorted(results, key=lambda r: order[r.session]))
