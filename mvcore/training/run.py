"""``mvcore train``: build everything from the config, fit, then write the run's outputs.

Model directory contents: ``config.yaml`` (resolved), ``plugins.json`` (versions),
``checkpoints/{best,last}.ckpt``, ``logs/`` (CSV and, when installed, TensorBoard),
``loss_curve.png``, ``predictions_<view>.csv`` (+ ``_pixel_error.csv``), ``metrics.csv`` and
``labeled_frames/*.png``.
"""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mvcore.config.load import dump_config
from mvcore.config.schema import MvConfig
from mvcore.errors import ConfigError


def _resolve_model_dir(config: MvConfig, output_dir: str | None, resume: str | None) -> Path:
    if resume:
        path = Path(resume)
        if not (path / "checkpoints" / "last.ckpt").is_file():
            raise ConfigError(f"--resume {resume}: no checkpoints/last.ckpt in that directory")
        return path
    if output_dir:
        return Path(output_dir)
    now = datetime.datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def _accelerator(config: MvConfig) -> tuple[str, int]:
    import torch

    wanted = config.training.accelerator
    if wanted in ("gpu", "cuda") or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"training.accelerator: {wanted} but no CUDA GPU is available")
        return "gpu", max(1, config.training.num_gpus)
    return "cpu", 1


def prepare_training(config: MvConfig, components: Any, project: Any) -> tuple[Any, Any]:
    """Everything a training run builds before it writes anything: the checked plan, the data
    module (augmenters, splits; unlabelled clips when unsupervised losses are active) and the
    Lightning module (backbone, losses) -> ``(module, data_module)``. Raises on any problem of
    the config, the plugins or the project."""
    import pytorch_lightning as pl

    from mvcore.build import (
        build_augmenters,
        build_backbone,
        build_losses,
        make_context,
        plan_run,
    )
    from mvcore.data.datamodule import MultiviewDataModule
    from mvcore.training.module import MultiviewPoseModule

    data_module = MultiviewDataModule(config, project=project)
    context = make_context(config, project, labels_source=data_module.train_keypoints_frame)
    plan = plan_run(config, components, context)
    data_module.augmenters = build_augmenters(plan, context)
    data_module.setup()
    pl.seed_everything(config.training.rng_seed_model_pt, workers=True, verbose=False)
    loss_supervised, loss_unsupervised = build_losses(plan, context)
    data_module.use_unlabeled = len(loss_unsupervised) > 0
    module = MultiviewPoseModule(config, build_backbone(plan, context), context,
                                 loss_supervised, loss_unsupervised)
    return module, data_module


def train(config: MvConfig, output_dir: str | None = None, resume: str | None = None) -> Path:
    """Train a model; returns the model directory."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from mvcore import __version__
    from mvcore.data.project import MultiviewProject
    from mvcore.plugin.components import load_components
    from mvcore.training.callbacks import AnnealWeight, StepsPerEpoch, UnfreezeBackbone

    components = load_components()
    project = MultiviewProject.from_config(config)
    accelerator, devices = _accelerator(config)
    world = devices * config.training.num_nodes  # per-device batch sizes: the datamodule
    module, data_module = prepare_training(config, components, project)
    model_dir = _resolve_model_dir(config, output_dir, resume)
    model_dir.mkdir(parents=True, exist_ok=True)

    _save_run_info(config, components, model_dir, __version__)
    (model_dir / "context.json").write_text(json.dumps(module.context.to_json(), indent=2))
    baseline = _untrained_metrics(module, data_module, project, model_dir, resume)

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
        from pytorch_lightning.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor="val_pixel_error",
                                       patience=config.training.early_stop_patience))
    if resume:  # keep the log of the epochs before the checkpoint (CSVLogger deletes it)
        from mvcore.training.callbacks import ResumedCSVLogger

        resume_step = torch.load(model_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                 weights_only=True, mmap=True)["global_step"]
        csv_logger = ResumedCSVLogger(model_dir, name="logs", version="",
                                      resume_step=resume_step)
    else:
        csv_logger = CSVLogger(model_dir, name="logs", version="")
    loggers: list[Any] = [csv_logger]
    try:
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(model_dir, name="logs", version="tensorboard"))
    except ImportError:
        pass
    training = config.training
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=training.num_nodes,
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
    if trainer.global_rank == 0:
        best = model_dir / "checkpoints" / "best.ckpt"
        if best.is_file():
            state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
            module.load_state_dict(state)
        write_outputs(module, data_module, project, model_dir, baseline)
    return model_dir


def _save_run_info(config: MvConfig, components: Any, model_dir: Path, version: str) -> None:
    data = dump_config(config)
    data["data"]["data_dir"] = str(Path(config.config_dir or ".", config.data.data_dir).resolve())
    (model_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    info = {"mvcore": version, "plugins": components.versions(),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    (model_dir / "plugins.json").write_text(json.dumps(info, indent=2))


UNTRAINED_METRICS = "untrained_metrics.json"


def _untrained_metrics(module: Any, data_module: Any, project: Any, model_dir: Path,
                       resume: str | None) -> dict[str, float]:
    """The untrained model's metrics: measured (and saved to ``UNTRAINED_METRICS``) before a
    new run; read back by a resumed run, whose model is no longer untrained ({} if the file
    is missing, e.g. a directory written by an older version)."""
    path = model_dir / UNTRAINED_METRICS
    if resume:
        return json.loads(path.read_text()) if path.is_file() else {}
    metrics = _baseline_metrics(module, data_module, project)
    path.write_text(json.dumps(metrics, indent=2))
    return metrics


def _baseline_metrics(module: Any, data_module: Any, project: Any) -> dict[str, float]:
    """Pixel error of the untrained model on the test split (val if there is no test)."""
    from mvcore.predict.labeled import pixel_errors, predict_rows

    rows = data_module.test_indices if len(data_module.test_indices) else data_module.val_indices
    predictions = predict_rows(module, data_module, rows, progress=False)
    errors = pixel_errors(predictions["keypoints"], project.keypoints[predictions["index"]])
    finite = errors[np.isfinite(errors)]
    return {"untrained_pixel_error_mean": float(finite.mean()) if finite.size else float("nan")}


def write_outputs(module: Any, data_module: Any, project: Any, model_dir: Path,
                  baseline: dict[str, float]) -> dict[str, float]:
    """Predict every labelled row and write CSVs, metrics and figures."""
    from mvcore.predict.labeled import (
        pixel_errors,
        predict_rows,
        summarise,
        write_keypoint_metric,
        write_labeled_predictions,
    )
    from mvcore.predict.plots import plot_labeled_frames, plot_loss_curve

    split_names = data_module.split_names()
    predictions = predict_rows(module, data_module)
    write_labeled_predictions(project, predictions, split_names, model_dir)
    rows = predictions["index"]
    errors = pixel_errors(predictions["keypoints"], project.keypoints[rows])
    sets = [split_names[r] for r in rows]
    metrics = {**baseline, **summarise(errors, sets)}
    per_keypoint: dict[str, np.ndarray] = {}
    if project.has_calibration:
        reprojection = _reprojection_errors(project, predictions)
        per_keypoint["reprojection"] = reprojection
        metrics.update(summarise(reprojection, sets, name="reprojection_error",
                                 with_mean=False))
    per_keypoint.update(_loss_keypoint_errors(module, predictions))
    for name, values in per_keypoint.items():
        write_keypoint_metric(project, rows, values, sets, model_dir, f"{name}_error")
    import pandas as pd

    pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}).to_csv(
        model_dir / "metrics.csv", index=False)
    plot_loss_curve(model_dir / "logs" / "metrics.csv", model_dir / "loss_curve.png")
    test_rows = [int(r) for r in (data_module.test_indices if len(data_module.test_indices)
                                  else data_module.val_indices)]
    count = module.config.eval.num_labeled_frame_plots
    plot_labeled_frames(project, predictions, test_rows[:count], model_dir / "labeled_frames")
    return metrics


def _reprojection_errors(project: Any, predictions: dict[str, np.ndarray]) -> np.ndarray:
    """Multi-view consistency of predictions ``(n, V, K)``: triangulate all views, reproject."""
    import torch

    from mvcore.geometry import reprojection_error, triangulate

    rows = predictions["index"]
    points = torch.as_tensor(predictions["keypoints"], dtype=torch.float64)
    cams = [project.calibrations[i].to_tensors(dtype=torch.float64)
            for i in project.calibration_index[rows]]
    intrinsics = torch.stack([c.intrinsics for c in cams])
    extrinsics = torch.stack([c.extrinsics for c in cams])
    distortions = torch.stack([c.distortions for c in cams])
    points_3d = triangulate(points, intrinsics, extrinsics, distortions)
    return reprojection_error(points_3d, points, intrinsics, extrinsics, distortions).numpy()


def _loss_keypoint_errors(module: Any, predictions: dict[str, np.ndarray]
                          ) -> dict[str, np.ndarray]:
    """Per-keypoint diagnostics ``(n, V, K)`` of the active losses that provide one (PCA)."""
    import torch

    keypoints = torch.as_tensor(predictions["keypoints"], dtype=torch.float32)
    n, v, k = keypoints.shape[:3]
    flat = keypoints.reshape(n, -1).to(module.device)
    out = {}
    for factory in (module.loss_supervised, module.loss_unsupervised):
        for name, loss in factory.losses.items():
            values = loss.keypoint_errors(flat)
            if values is not None:
                out[name] = values.detach().cpu().double().reshape(n, v, k).numpy()
    return out
