"""Run ``mvcore train`` and interrupt it at a chosen point, the way a user or the machine would.

``python interrupt_training.py`` imports mvcore once, then reads one JSON job per line on stdin
and runs each in a forked child (so a run costs its training, not the ~10 s of imports), writing
``{"rc": exit code, "cpu_s": CPU seconds}`` per job on stdout (rc -9: killed by SIGKILL). A job:

- ``argv``: the arguments after ``mvcore`` (``["train", CFG, "--set", ..., "--output", DIR]``);
- ``log``: the child's stdout and stderr go to ``log + ".out"`` / ``log + ".err"``;
- ``signal``: ``"KILL"`` (``kill -9``: no handler, no cleanup), ``"INT"`` (Ctrl-C) or
  ``"TERM"`` (a cluster's time limit), or None;
- ``when``: ``"batch:E:B"`` (after batch B of epoch E: mid-epoch) or ``"saving-last:E"``
  (while ``last.ckpt`` of epoch E is written: its temporary file is complete but not yet
  renamed).

The signal is sent with ``os.kill`` to the child itself, so it arrives exactly there. Every
run, the uninterrupted one included, is forked from the same parent: same state, same numbers.
A test helper only: mvcore has no such hook.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

import mvcore.training.checkpoints as checkpoints
import mvcore.training.fit as fit
import mvcore.workflow  # noqa: F401 - imported once here, in the parent
from mvcore.cli.main import main as mvcore_main

#: modules a run imports when it first needs them (the plugins' components, the ViT's timm,
#: matplotlib for the report's figures): imported once, here, rather than in every child
LAZY_MODULES = ["mv_vit.model", "mv_losses.pca", "mv_aug3d.pipelines", "timm",
                "matplotlib.backends.backend_agg", "matplotlib.font_manager"]


def _fire(name: str) -> None:
    os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


class _Interrupt(pl.Callback):
    def __init__(self, name: str, where: str, epoch: int, batch: int) -> None:
        self.name, self.where, self.epoch, self.batch = name, where, epoch, batch

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.where == "batch" and (trainer.current_epoch, batch_idx) == (self.epoch,
                                                                           self.batch):
            _fire(self.name)


def _install(name: str, when: str) -> None:
    """Make this process interrupt itself with ``SIG<name>`` at ``when`` (module docstring)."""
    where, *numbers = when.split(":")
    epoch, batch = int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else -1
    make_callbacks = fit._callbacks

    def callbacks(*args: Any, **kwargs: Any) -> list[Any]:
        return [*make_callbacks(*args, **kwargs), _Interrupt(name, where, epoch, batch)]

    fit._callbacks = callbacks
    if where == "saving-last":
        atomic_path = checkpoints.atomic_path

        class Interrupted(checkpoints.AtomicCheckpointIO):
            def save_checkpoint(self, checkpoint: dict, path: Any,
                                storage_options: Any = None) -> None:
                if Path(path).name != "last.ckpt" or checkpoint["epoch"] != epoch:
                    return super().save_checkpoint(checkpoint, path, storage_options)
                with atomic_path(path) as partial:
                    torch.save(checkpoint, partial)
                    _fire(name)

        fit.AtomicCheckpointIO = Interrupted


def _child(job: dict[str, Any]) -> None:
    for fd, suffix in ((1, ".out"), (2, ".err")):
        handle = os.open(job["log"] + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    code = 1
    try:
        if job.get("signal"):
            _install(job["signal"], job["when"])
        code = mvcore_main(job["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown as Python would, then exit 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for module in LAZY_MODULES:
        importlib.import_module(module)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(job)
        _, status, usage = os.wait4(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status),
                          "cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)


if __name__ == "__main__":
    serve()
