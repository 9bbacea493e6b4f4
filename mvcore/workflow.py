"""The steps a user runs, end to end: ``train`` fits a model and then reports on it.

``mvcore.training`` fits and imports nothing above it; ``mvcore.predict`` predicts and
reports; this module runs one after the other, which is all ``mvcore train`` does.

Order of a run, so that a mistake costs nothing and a failure leaves nothing misleading: check
the config, the plugins and the project (and, with ``--resume``, that the checkpoint fits them;
``mvcore.training.resume``) before anything is written; then lock the model directory
(``mvcore.files.DirectoryLock``: a second ``mvcore train`` on it gets a one-line error), write
the run info, fit, write the report, unlock; then predict the videos (video prediction locks
its own output folder).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mvcore.config.schema import MvConfig
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import find_sessions, prediction_video_dir
from mvcore.errors import ConfigError
from mvcore.files import DirectoryLock, writable_dir
from mvcore.plugin.components import load_components
from mvcore.predict.report import untrained_metrics, write_report
from mvcore.predict.video import predict_videos
from mvcore.training.fit import fit, prepare_training, resolve_model_dir, save_run_info
from mvcore.training.outcome import FitResult, TrainingInterrupted
from mvcore.training.resume import check_resume

__all__ = ["train", "train_run"]


def _launching_process() -> bool:
    """Whether this is the process a user started, not a rank Lightning's DDP launcher (or
    torchrun) started beside it: those run the same command again and must not lock."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    if (int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1
            and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")):
        return os.environ.get("SLURM_PROCID", "0") == "0"  # srun started every task itself
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


#: the model-directory locks this process holds (see ``_not_in_forked_children``)
_HELD: set[DirectoryLock] = set()


def _not_in_forked_children() -> None:
    """In a forked child (a DataLoader worker): close the inherited lock files without
    unlocking. An OS file lock lives as long as any process holds its file open, so workers
    that outlive a ``kill -9``-ed trainer by a few seconds would otherwise keep the directory
    locked and make an immediate ``--resume`` fail as busy."""
    for lock in _HELD:
        handle = getattr(lock, "_handle", None)
        if handle is not None:
            with contextlib.suppress(OSError):
                # point the descriptor at /dev/null: drops this process's hold on the lock
                # file, and the file object still has a descriptor of its own to close
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, handle.fileno())
                os.close(devnull)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_not_in_forked_children)


@contextlib.contextmanager
def _model_dir_lock(model_dir: Path) -> Iterator[None]:
    if not _launching_process():
        yield
        return
    with DirectoryLock(model_dir, "train") as lock:
        _HELD.add(lock)
        try:
            yield
        finally:
            _HELD.discard(lock)


def train_run(config: MvConfig, output_dir: str | None = None, resume: str | None = None
              ) -> FitResult:
    """Check and build the run (nothing is written if that fails), fit, then write the
    report (predictions on the labelled frames, metrics, figures) and, with
    ``eval.predict_vids_after_training``, predict the videos (labelled videos too with
    ``eval.save_vids_after_training``). Returns how the run ended; raises
    ``TrainingFailed`` / ``TrainingInterrupted`` (``mvcore.training.outcome``) when it did not
    train, and never writes a report then."""
    components = load_components()
    project = MultiviewProject.from_config(config)
    if config.eval.predict_vids_after_training:  # found wanting now, not after hours
        videos = prediction_video_dir(config)
        if videos is None:
            raise ConfigError("eval.predict_vids_after_training: no videos to predict; set "
                              "eval.test_videos_directory or data.video_dir")
        find_sessions(videos, list(project.view_names), sync=config.data.video_sync)
    module, data_module = prepare_training(config, components, project, resume=bool(resume))
    model_dir = resolve_model_dir(config, output_dir, resume)
    if resume:
        check_resume(model_dir, module, config)
    writable_dir(model_dir, "--resume" if resume else "--output")
    with _model_dir_lock(model_dir):
        save_run_info(config, components, module.context, model_dir)
        baseline = untrained_metrics(module, data_module, project, model_dir, resume)
        result = fit(config, module, data_module, model_dir, resume)
        if result.is_main:
            try:
                write_report(module, data_module, project, model_dir, baseline)
            except KeyboardInterrupt:
                # a resumed run that has nothing left to train writes the report again
                raise TrainingInterrupted(
                    "stopped: interrupted (Ctrl-C) while writing the report; training finished "
                    "and its checkpoints are complete", model_dir, resumable=True) from None
    if result.is_main and config.eval.predict_vids_after_training:
        predict_videos(model_dir, labeled_video=config.eval.save_vids_after_training,
                       overwrite=True)
    return result


def train(config: MvConfig, output_dir: str | None = None, resume: str | None = None) -> Path:
    """``train_run`` for callers that want the model directory only."""
    return train_run(config, output_dir, resume).model_dir
