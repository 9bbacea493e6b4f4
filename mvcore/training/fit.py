"""Fitting a model: build everything a run needs from the config, then let Lightning train it.

Writes to the model directory: ``config.yaml`` (resolved), ``plugins.json`` (versions),
``context.json`` (the ``Context`` the network was built with), ``checkpoints/{best,last}.ckpt``
and ``logs/`` (CSV and, when installed, TensorBoard). What a run reports afterwards
(predictions, metrics, figures) is ``mvcore.predict.report``; ``mvcore.workflow.train`` runs
the two, holding the directory's lock.

A run cannot report a broken model as trained (``mvcore.training.outcome``): a NaN loss or
weight stops it (``mvcore.training.guard``), a NaN validation error never makes a best
checkpoint, and ``fit`` returns only when there is a checkpoint to show. Files mvcore writes
itself, checkpoints included, are complete or absent (``mvcore.training.checkpoints``), and a
resumed run continues exactly where the checkpoint left off: Lightning's loop, optimiser and
scheduler states, the callbacks' states, the global random states and the data order
(``mvcore.data.datamodule.EpochSeededSampler``).
"""

from __future__ import annotations

import datetime
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mvcore import __version__
from mvcore.build import build_augmenters, build_backbone, build_losses, make_context, plan_run
from mvcore.config.load import dump_config
from mvcore.config.schema import MvConfig
from mvcore.data.datamodule import MultiviewDataModule
from mvcore.data.triangulate import label_geometry_findings
from mvcore.errors import ConfigError
from mvcore.files import write_json_atomically, write_text_atomically
from mvcore.training.callbacks import (
    AnnealWeight,
    ResumedCSVLogger,
    StepsPerEpoch,
    UnfreezeBackbone,
    progress_bar,
)
from mvcore.training.checkpoints import (
    AtomicCheckpointIO,
    BestCheckpoint,
    RandomState,
    remove_partial_checkpoints,
)
from mvcore.training.guard import Diverged, FiniteGuard
from mvcore.training.module import MultiviewPoseModule
from mvcore.training.outcome import (
    LIKELY_CAUSES,
    FitResult,
    TrainingFailed,
    TrainingInterrupted,
)
from mvcore.training.resume import LAST, read_checkpoint
from mvcore.training.weights import start_from_checkpoint


def resolve_model_dir(config: MvConfig, output_dir: str | None, resume: str | None) -> Path:
    """``--resume`` dir (it must hold ``checkpoints/last.ckpt``), ``--output`` (it must not:
    a new run there would mix its files with a trained model's), or a new
    ``outputs/<date>/<time>``."""
    if resume:
        path = Path(resume)
        if not (path / LAST).is_file() and (path / "imported_from.json").is_file():
            raise ConfigError(
                f"--resume {resume}: imported by `mvcore import-lightning-pose` from a "
                "checkpoint without optimiser state, so there is no run to continue; fine-tune "
                "it instead: mvcore "
                f"train {path / 'config.yaml'} --set model.checkpoint={path} --output NEW_DIR")
        if not (path / LAST).is_file():
            raise ConfigError(f"--resume {resume}: no checkpoints/last.ckpt in that directory; "
                              "is it the model directory of an `mvcore train` run?")
        return path
    if output_dir:
        path = Path(output_dir)
        if (path / LAST).is_file():
            raise ConfigError(f"--output {output_dir} already holds a trained model "
                              f"({LAST}); continue it with --resume {output_dir}, or choose "
                              "another --output")
        return path
    now = datetime.datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def accelerator(config: MvConfig) -> tuple[str, int]:
    """``(Lightning accelerator, devices per node)`` for ``training.accelerator`` and
    ``training.devices`` (null: ``num_gpus`` on a GPU, 1 on the CPU)."""
    training = config.training
    wanted = training.accelerator
    if wanted in ("gpu", "cuda") or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"training.accelerator: {wanted} but no CUDA GPU is available")
        return "gpu", training.devices_per_node(on_gpu=True)
    return "cpu", training.devices_per_node(on_gpu=False)


def prepare_training(config: MvConfig, components: Any, project: Any, resume: bool = False
                     ) -> tuple[Any, Any]:
    """Everything a training run builds before it writes anything: the checked plan, the data
    module (augmenters, splits; unlabelled clips when unsupervised losses are active) and the
    Lightning module (backbone, losses; the weights of ``model.checkpoint`` unless
    ``resume``, whose checkpoint brings its own) -> ``(module, data_module)``. Raises on any
    problem of the config, the plugins or the project."""
    data_module = MultiviewDataModule(config, project=project)
    for finding in label_geometry_findings(project):
        warnings.warn(f"labels and calibration: {finding}", stacklevel=2)
    context = make_context(config, project, labels_source=data_module.train_keypoints_frame)
    plan = plan_run(config, components, context)
    data_module.augmenters = build_augmenters(plan, context)
    data_module.setup()
    pl.seed_everything(config.training.rng_seed_model_pt, workers=True, verbose=False)
    loss_supervised, loss_unsupervised = build_losses(plan, context)
    data_module.use_unlabeled = len(loss_unsupervised) > 0
    module = MultiviewPoseModule(config, build_backbone(plan, context), context,
                                 loss_supervised, loss_unsupervised)
    if config.model.checkpoint and not resume:
        start_from_checkpoint(module, config)
    return module, data_module


def _callbacks(config: MvConfig, module: Any, model_dir: Path) -> list[Any]:
    """The callbacks of a run; the guard first, checkpoints last (Lightning's order too)."""
    checkpoints = model_dir / "checkpoints"
    callbacks: list[Any] = [
        FiniteGuard(),
        RandomState(),
        BestCheckpoint(dirpath=checkpoints, filename="best", monitor="val_pixel_error",
                       mode="min", auto_insert_metric_name=False, enable_version_counter=False),
        # last.ckpt after every epoch: Lightning's save_last=True rewrites last.ckpt only when
        # the monitored checkpoint improves, so --resume would restart from the best epoch
        ModelCheckpoint(dirpath=checkpoints, filename="last", monitor=None,
                        save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),
        StepsPerEpoch(),
        progress_bar(),
    ]
    if config.training.ckpt_every_n_epochs:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints,
                                         filename="epoch{epoch:04d}", save_top_k=-1,
                                         every_n_epochs=config.training.ckpt_every_n_epochs))
    annealed = [name for factory in (module.loss_supervised, module.loss_unsupervised)
                for name, loss in factory.losses.items() if loss.annealed]
    if annealed:
        schedule = config.callbacks.anneal_weight
        callbacks.append(AnnealWeight("anneal_weight", schedule.init_val,
                                      schedule.increase_factor, schedule.final_val,
                                      schedule.freeze_until_epoch))
    if config.training.unfreezing_step is not None or config.training.unfreezing_epoch:
        callbacks.append(UnfreezeBackbone(unfreeze_epoch=config.training.unfreezing_epoch,
                                          unfreeze_step=config.training.unfreezing_step))
    if config.training.early_stopping:
        # a NaN epoch counts as no improvement (never best), not as a reason to stop
        callbacks.append(EarlyStopping(monitor="val_pixel_error", check_finite=False,
                                       patience=config.training.early_stop_patience))
    return callbacks


def _loggers(model_dir: Path, resume: str | None) -> list[Any]:
    if resume:  # keep the log of the epochs before the checkpoint (CSVLogger deletes it)
        resume_step = torch.load(model_dir / LAST, map_location="cpu", weights_only=True,
                                 mmap=True)["global_step"]
        csv_logger: CSVLogger = ResumedCSVLogger(model_dir, name="logs", version="",
                                                 resume_step=resume_step)
    else:
        csv_logger = CSVLogger(model_dir, name="logs", version="")
    loggers: list[Any] = [csv_logger]
    try:
        # lazy: optional dependency, TensorBoard logs only where it is installed
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(model_dir, name="logs", version="tensorboard"))
    except ImportError:
        pass
    return loggers


def _saved_epoch(path: Path) -> int | None:
    """The epoch a checkpoint on disk holds (None when there is none)."""
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


def _kept(model_dir: Path) -> str:
    """What a run that stopped early leaves to use or resume from, for its message."""
    epoch = _saved_epoch(model_dir / LAST)
    if epoch is None:
        return "no epoch finished, so no checkpoint was written"
    return f"the last good checkpoint is kept: {model_dir / LAST} (epoch {epoch})"


def _interrupted(model_dir: Path, trainer: Any, how: str, exit_code: int
                 ) -> TrainingInterrupted:
    where = f"in epoch {trainer.current_epoch} (step {trainer.global_step})"
    resumable = (model_dir / LAST).is_file()
    return TrainingInterrupted(f"stopped: {how} {where}; {_kept(model_dir)}", model_dir,
                               resumable, exit_code)


def fit(config: MvConfig, module: Any, data_module: Any, model_dir: Path,
        resume: str | None = None) -> FitResult:
    """Train ``module`` (from ``prepare_training``) with checkpoints and logs in
    ``model_dir``; ``resume`` continues from its ``last.ckpt`` (``check_resume`` first).
    Afterwards the module holds the best checkpoint's weights (the last ones if validation
    never ran) and the result says which (``FitResult.is_main``: rank 0, the process that
    writes reports).

    Raises ``TrainingFailed`` (a loss or weight became NaN/infinite; no epoch finished;
    validation never measured a keypoint) or ``TrainingInterrupted`` (Ctrl-C, SIGTERM); the
    checkpoints of the last finished epoch stay valid in both cases."""
    kind, devices = accelerator(config)
    world = devices * config.training.num_nodes  # per-device batch sizes: the datamodule
    callbacks = _callbacks(config, module, model_dir)
    best = next(c for c in callbacks if isinstance(c, BestCheckpoint))
    if resume:
        remove_partial_checkpoints(model_dir / "checkpoints")
    training = config.training
    trainer = pl.Trainer(
        accelerator=kind, devices=devices, num_nodes=training.num_nodes,
        strategy="ddp" if world > 1 else "auto", precision=training.precision,
        max_epochs=training.max_epochs if training.max_steps is None else None,
        min_epochs=training.min_epochs if training.max_steps is None else None,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        min_steps=training.min_steps, check_val_every_n_epoch=training.check_val_every_n_epoch,
        val_check_interval=training.val_check_interval,
        log_every_n_steps=training.log_every_n_steps, callbacks=callbacks,
        logger=_loggers(model_dir, resume), plugins=[AtomicCheckpointIO()],
        default_root_dir=model_dir, limit_train_batches=training.limit_train_batches,
        accumulate_grad_batches=training.accumulate_grad_batches,
        profiler=training.profiler, num_sanity_val_steps=1, enable_model_summary=False,
    )
    ckpt_path = str(model_dir / LAST) if resume else None
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            trainer.fit(module, datamodule=data_module, ckpt_path=ckpt_path)
    except Diverged as exc:
        raise TrainingFailed(f"diverged: {exc}; likely causes: {LIKELY_CAUSES}; "
                             f"{_kept(model_dir)}", model_dir) from None
    except SIGTERMException:
        raise _interrupted(model_dir, trainer, "terminated (SIGTERM)", 143) from None
    except SystemExit:  # Lightning turns Ctrl-C into sys.exit(1)
        if trainer.interrupted:
            raise _interrupted(model_dir, trainer, "interrupted (Ctrl-C)", 130) from None
        raise
    except KeyboardInterrupt:  # outside Lightning's handler (setting up, tearing down)
        raise _interrupted(model_dir, trainer, "interrupted (Ctrl-C)", 130) from None
    finally:
        if main_thread and on_sigint is not None:  # Lightning ignores SIGINT after Ctrl-C
            signal.signal(signal.SIGINT, on_sigint)
    return _finished(module, trainer, best, model_dir)


def _finished(module: Any, trainer: Any, best: BestCheckpoint, model_dir: Path) -> FitResult:
    """The result of a run that ended normally: load the best (else last) weights into
    ``module``; TrainingFailed when there is nothing trustworthy to show."""
    checkpoints = model_dir / "checkpoints"
    common = dict(model_dir=model_dir, epochs=int(trainer.current_epoch),
                  steps=int(trainer.global_step))
    if trainer.global_rank != 0:
        return FitResult(is_main=False, weights=checkpoints / "last.ckpt", **common)
    if not (model_dir / LAST).is_file():
        raise TrainingFailed(
            "failed: no training epoch finished, so there is no checkpoint (training.max_epochs"
            ", max_steps and limit_train_batches must allow at least one)", model_dir)
    best_path = checkpoints / "best.ckpt"
    if not best_path.is_file() and best.unmeasured_epochs:
        raise TrainingFailed(
            f"failed: the validation pixel error was NaN in all {best.unmeasured_epochs} "
            "validated epochs - the model predicted no keypoint on the validation frames (or "
            f"they have no labels); likely causes: {LIKELY_CAUSES}; {_kept(model_dir)}",
            model_dir)
    weights = best_path if best_path.is_file() else model_dir / LAST
    saved = read_checkpoint(weights)
    module.load_state_dict(saved["state_dict"])
    if weights != best_path:
        return FitResult(is_main=True, weights=weights, **common)
    score = best.best_model_score
    return FitResult(is_main=True, weights=weights, **common,
                     best_error=float(score) if score is not None else None,
                     best_epoch=int(saved["epoch"]))


def save_run_info(config: MvConfig, components: Any, context: Any, model_dir: Path) -> None:
    """``config.yaml`` (Lightning Pose's shape, absolute data_dir), ``plugins.json`` and
    ``context.json``: what prediction needs to rebuild the network. Each is written whole or
    not at all."""
    data = dump_config(config)
    data["data"]["data_dir"] = str(Path(config.config_dir or ".", config.data.data_dir).resolve())
    write_text_atomically(model_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False))
    info = {"mvcore": __version__, "plugins": components.versions(),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    write_json_atomically(model_dir / "plugins.json", info)
    write_json_atomically(model_dir / "context.json", context.to_json())
