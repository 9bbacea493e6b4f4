"""Fitting a model: build everything a run needs from the config, then let Lightning train it.

Writes to the model directory: ``config.yaml`` (resolved), ``plugins.json`` (versions),
``context.json`` (the ``Context`` the network was built with), ``checkpoints/{best,last}.ckpt``
and ``logs/`` (CSV and, when installed, TensorBoard). What a run reports afterwards
(predictions, metrics, figures) is ``mvcore.predict.report``; ``mvcore.workflow.train`` runs
the two.
"""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from mvcore import __version__
from mvcore.build import build_augmenters, build_backbone, build_losses, make_context, plan_run
from mvcore.config.load import dump_config
from mvcore.config.schema import MvConfig
from mvcore.data.datamodule import MultiviewDataModule
from mvcore.data.triangulate import label_geometry_findings
from mvcore.errors import ConfigError
from mvcore.training.callbacks import (
    AnnealWeight,
    ResumedCSVLogger,
    StepsPerEpoch,
    UnfreezeBackbone,
)
from mvcore.training.module import MultiviewPoseModule
from mvcore.training.weights import start_from_checkpoint


def resolve_model_dir(config: MvConfig, output_dir: str | None, resume: str | None) -> Path:
    """``--resume`` dir (it must hold ``checkpoints/last.ckpt``), ``--output``, or a new
    ``outputs/<date>/<time>``."""
    if resume:
        path = Path(resume)
        if not (path / "checkpoints" / "last.ckpt").is_file():
            raise ConfigError(f"--resume {resume}: no checkpoints/last.ckpt in that directory")
        return path
    if output_dir:
        return Path(output_dir)
    now = datetime.datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def accelerator(config: MvConfig) -> tuple[str, int]:
    """``(Lightning accelerator, devices)`` for ``training.accelerator``."""
    wanted = config.training.accelerator
    if wanted in ("gpu", "cuda") or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"training.accelerator: {wanted} but no CUDA GPU is available")
        return "gpu", max(1, config.training.num_gpus)
    return "cpu", 1


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


def fit(config: MvConfig, module: Any, data_module: Any, model_dir: Path,
        resume: str | None = None) -> bool:
    """Train ``module`` (from ``prepare_training``) with checkpoints and logs in
    ``model_dir``; ``resume`` continues from its ``last.ckpt``. Afterwards the module holds the
    best checkpoint's weights (the last ones if validation never ran). Returns whether this is
    the main process (rank 0), the one that writes reports."""
    kind, devices = accelerator(config)
    world = devices * config.training.num_nodes  # per-device batch sizes: the datamodule
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=model_dir / "checkpoints", filename="best",
                        monitor="val_pixel_error", mode="min",
                        auto_insert_metric_name=False, enable_version_counter=False),
        # last.ckpt after every epoch: Lightning's save_last=True rewrites last.ckpt only when
        # the monitored checkpoint improves, so --resume would restart from the best epoch
        ModelCheckpoint(dirpath=model_dir / "checkpoints", filename="last", monitor=None,
                        save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),
        StepsPerEpoch(),
    ]
    if config.training.ckpt_every_n_epochs:
        callbacks.append(ModelCheckpoint(dirpath=model_dir / "checkpoints",
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
        callbacks.append(EarlyStopping(monitor="val_pixel_error",
                                       patience=config.training.early_stop_patience))
    if resume:  # keep the log of the epochs before the checkpoint (CSVLogger deletes it)
        resume_step = torch.load(model_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                 weights_only=True, mmap=True)["global_step"]
        csv_logger = ResumedCSVLogger(model_dir, name="logs", version="",
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
    training = config.training
    trainer = pl.Trainer(
        accelerator=kind, devices=devices, num_nodes=training.num_nodes,
        strategy="ddp" if world > 1 else "auto", precision=training.precision,
        max_epochs=training.max_epochs if training.max_steps is None else None,
        min_epochs=training.min_epochs if training.max_steps is None else None,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        min_steps=training.min_steps, check_val_every_n_epoch=training.check_val_every_n_epoch,
        val_check_interval=training.val_check_interval,
        log_every_n_steps=training.log_every_n_steps, callbacks=callbacks, logger=loggers,
        default_root_dir=model_dir, limit_train_batches=training.limit_train_batches,
        accumulate_grad_batches=training.accumulate_grad_batches,
        profiler=training.profiler, num_sanity_val_steps=1, enable_model_summary=False,
    )
    ckpt_path = str(model_dir / "checkpoints" / "last.ckpt") if resume else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        trainer.fit(module, datamodule=data_module, ckpt_path=ckpt_path)
    if trainer.global_rank != 0:
        return False
    best = model_dir / "checkpoints" / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    return True


def save_run_info(config: MvConfig, components: Any, context: Any, model_dir: Path) -> None:
    """``config.yaml`` (Lightning Pose's shape, absolute data_dir), ``plugins.json`` and
    ``context.json``: what prediction needs to rebuild the network."""
    data = dump_config(config)
    data["data"]["data_dir"] = str(Path(config.config_dir or ".", config.data.data_dir).resolve())
    (model_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    info = {"mvcore": __version__, "plugins": components.versions(),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    (model_dir / "plugins.json").write_text(json.dumps(info, indent=2))
    (model_dir / "context.json").write_text(json.dumps(context.to_json(), indent=2))
