"""``MultiviewPoseModule``: a backbone and two loss factories in one LightningModule.

Per batch: images ``(B, V, 3, H, W)`` -> backbone -> heatmaps ``(B, V, K, h, w)`` -> sub-pixel
keypoints and confidences -> frame pixels -> the ``mvcore.contracts.LossInputs`` of that batch
-> the loss factories. Inputs marked ``on_demand`` in the contract (triangulations,
reprojections) are computed exactly when a loss of the group being fed declares them; the
module knows no loss by name.

Training batches are a ``LabeledBatch`` or, when the data module serves unlabelled video,
``{"labeled": LabeledBatch, "unlabeled": ClipBatch}``. Supervised losses always use the
labelled batch; unsupervised losses use the clip when there is one (its T frames play the batch
dimension, in temporal order, without targets), else the labelled batch. Validation and test
apply both to the labelled batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from mvcore.context import Context
from mvcore.contracts import LOSS_INPUTS
from mvcore.data.bbox import frame_to_model, model_to_frame
from mvcore.data.heatmaps import heatmap_to_keypoints
from mvcore.geometry import (
    CameraTensors,
    apply_homography,
    project_points,
    triangulate,
    triangulate_pairs,
)
from mvcore.losses.factory import LossFactory
from mvcore.training.guard import check_finite_loss

__all__ = ["MultiviewPoseModule"]


class _Step:
    """What one forward pass knows, for the on-demand inputs: augmented-frame predictions
    ``(B, V, K, 2)``, cameras, the calibration mask ``(B, 1, 1, 1)`` and the computed inputs."""

    def __init__(self, points: torch.Tensor, bbox: torch.Tensor, cameras: CameraTensors,
                 calibrated: torch.Tensor) -> None:
        self.points, self.bbox, self.cameras, self.calibrated = points, bbox, cameras, calibrated
        self.done: dict[str, torch.Tensor] = {}

    def mask(self, values: torch.Tensor) -> torch.Tensor:
        """NaN for frames without calibration (their cameras are placeholders)."""
        calibrated = self.calibrated.reshape(-1, *([1] * (values.ndim - 1)))
        return torch.where(calibrated, values, torch.full_like(values, float("nan")))


class MultiviewPoseModule(pl.LightningModule):
    """Trains a backbone with the losses of two factories (supervised, unsupervised)."""

    def __init__(
        self,
        config: Any,
        backbone: Any,
        context: Context,
        loss_supervised: LossFactory | None = None,
        loss_unsupervised: LossFactory | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.num_views = context.num_views
        self.num_keypoints = context.num_keypoints
        self.image_size = context.image_size
        self.backbone = backbone
        self.loss_supervised = loss_supervised or LossFactory()
        self.loss_unsupervised = loss_unsupervised or LossFactory()
        # the annealing weight (callbacks.anneal_weight writes it); a buffer so it is saved
        self.register_buffer("anneal_weight", torch.tensor(1.0))
        self.steps_per_epoch = 1
        self._start_pixel_error()

    # ------------------------------------------------------------ on-demand inputs
    @property
    def producers(self) -> dict[str, Callable[[_Step], torch.Tensor]]:
        """How each on-demand loss input is computed (one per ``on_demand`` contract entry)."""
        return {
            "keypoints_pred_3d": self._pairwise_3d,
            "keypoints_pred_3d_triangulated": self._triangulated_3d,
            "keypoints_pred_2d_reprojected": self._reprojected_2d,
        }

    def _on_demand(self, name: str, step: _Step) -> torch.Tensor:
        if name not in step.done:
            step.done[name] = self.producers[name](step)
        return step.done[name]

    def _pairwise_3d(self, step: _Step) -> torch.Tensor:
        """``(B, P, K, 3)``: every camera pair triangulates every keypoint."""
        cams = step.cameras
        pairs = triangulate_pairs(step.points, cams.intrinsics, cams.extrinsics, cams.distortions)
        return step.mask(pairs)

    def _triangulated_3d(self, step: _Step) -> torch.Tensor:
        """``(B, K, 3)``: all views at once (DLT)."""
        cams = step.cameras
        points = triangulate(step.points, cams.intrinsics, cams.extrinsics, cams.distortions)
        return step.mask(points)

    def _reprojected_2d(self, step: _Step) -> torch.Tensor:
        """``(B, N, 2)`` model pixels: the all-view triangulation projected into every view."""
        cams = step.cameras
        points_3d = self._on_demand("keypoints_pred_3d_triangulated", step)
        frame = project_points(points_3d, cams.intrinsics, cams.extrinsics, cams.distortions)
        model = frame_to_model(frame, step.bbox, self.image_size)
        return model.reshape(model.shape[0], -1, 2)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, H, W)`` -> heatmaps ``(B, V, K, h, w)``."""
        return self.backbone(images)

    def predict_keypoints(self, images: torch.Tensor, bbox: torch.Tensor | None = None
                          ) -> dict[str, torch.Tensor]:
        """Heatmaps, keypoints in model pixels and (with ``bbox (B, V, 4)``) frame pixels."""
        heatmaps = self(images)
        keypoints, confidences = heatmap_to_keypoints(heatmaps, self.image_size,
                                                      grid=self.context.heatmap_grid)
        out = {"heatmaps": heatmaps, "keypoints_model": keypoints, "confidences": confidences}
        if bbox is not None:
            out["keypoints_frame"] = model_to_frame(keypoints, bbox, self.image_size)
        return out

    def prediction_inputs(
        self,
        images: torch.Tensor,
        bbox: torch.Tensor,
        transforms: torch.Tensor | None = None,
        cameras: CameraTensors | None = None,
        has_calibration: torch.Tensor | None = None,
        wanted: set[str] | frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Run the model and build the target-free loss inputs (``mvcore.contracts``).

        ``images (B, V, 3, H, W)``, ``bbox (B, V, 4)``, optional ``transforms (B, V, 3, 3)``
        (original -> augmented model pixels), ``cameras`` ``(B, V, ...)`` and
        ``has_calibration (B,)`` (used when the project is calibrated). ``wanted``: the
        on-demand inputs to compute (those the losses to be fed declare)."""
        b, v, k = images.shape[0], self.num_views, self.num_keypoints
        out = self.predict_keypoints(images, bbox)
        pred_aug_frame = out["keypoints_frame"]  # (B, V, K, 2), augmented space
        if transforms is not None:
            pred_orig_model = apply_homography(out["keypoints_model"],
                                               torch.linalg.inv(transforms.to(pred_aug_frame)))
            pred_orig_frame = model_to_frame(pred_orig_model, bbox, self.image_size)
        else:
            pred_orig_frame = pred_aug_frame
        inputs: dict[str, Any] = {
            "heatmaps_pred": out["heatmaps"].reshape(b, v * k, *out["heatmaps"].shape[-2:]),
            "keypoints_pred": pred_orig_frame.reshape(b, -1),
            "keypoints_pred_augmented": pred_aug_frame.reshape(b, -1),
            "confidences": out["confidences"].reshape(b, -1),
        }
        if self.context.has_calibration and cameras is not None:
            cameras = cameras.to(dtype=pred_aug_frame.dtype)
            if has_calibration is None:
                has_calibration = torch.ones(b, dtype=torch.bool, device=images.device)
            calibrated = has_calibration.bool().reshape(b)
            inputs.update(cameras=cameras, has_calibration=calibrated)
            step = _Step(pred_aug_frame, bbox, cameras, calibrated)
            for name in wanted:
                if LOSS_INPUTS[name].on_demand:
                    inputs[name] = self._on_demand(name, step)
        return inputs

    def loss_inputs(self, batch: dict[str, Any], wanted: set[str] | frozenset[str] = frozenset()
                    ) -> dict[str, Any]:
        """Run the model on a ``LabeledBatch``: ``prediction_inputs`` plus the targets."""
        b, v, k = batch["images"].shape[0], self.num_views, self.num_keypoints
        inputs = self.prediction_inputs(batch["images"], batch["bbox"], batch.get("transforms"),
                                        batch.get("cameras"), batch.get("has_calibration"),
                                        wanted)
        dtype_ref = inputs["keypoints_pred_augmented"]
        targ_frame = model_to_frame(batch["keypoints"].to(dtype_ref), batch["bbox"],
                                    self.image_size)
        inputs["heatmaps_targ"] = batch["heatmaps"].reshape(b, v * k,
                                                            *batch["heatmaps"].shape[-2:])
        inputs["keypoints_targ"] = targ_frame.reshape(b, -1)
        if self.context.has_calibration:
            inputs["keypoints_targ_3d"] = batch["keypoints_3d"].to(dtype_ref)
        return inputs

    def unlabeled_loss_inputs(self, clip: dict[str, Any],
                              wanted: set[str] | frozenset[str] = frozenset()
                              ) -> dict[str, Any]:
        """Target-free loss inputs of a ``ClipBatch`` (one clip; its T frames are the batch,
        in temporal order)."""
        cameras = clip.get("cameras")
        return self.prediction_inputs(clip["frames"][0], clip["bbox"][0], None,
                                      None if cameras is None else cameras[0],
                                      clip["has_calibration"][0], wanted)

    # ----------------------------------------------------------------- training
    def _log_list(self, logs: list[dict[str, Any]], batch_size: int, on_step: bool) -> None:
        for item in logs:
            self.log(item["name"], item["value"], prog_bar=bool(item.get("prog_bar", False)),
                     on_step=on_step, on_epoch=True, batch_size=batch_size,
                     sync_dist=not on_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Supervised losses on the labelled batch; unsupervised ones on the unlabelled clip
        of a combined batch ``{"labeled", "unlabeled"}``, else on the labelled batch."""
        unlabeled = None
        if "labeled" in batch and "unlabeled" in batch:
            batch, unlabeled = batch["labeled"], batch["unlabeled"]
        progress = self.backbone.set_progress(self.current_epoch, self.global_step,
                                              self.steps_per_epoch)
        batch_size = batch["images"].shape[0]
        for name, value in progress.items():
            self.log(name, float(value), on_step=True, on_epoch=False, batch_size=batch_size)
        wanted = self.loss_supervised.declared_inputs()
        if unlabeled is None:
            wanted |= self.loss_unsupervised.declared_inputs()
        inputs = self.loss_inputs(batch, wanted)
        anneal = self.anneal_weight
        total, logs = self.loss_supervised(stage="train", anneal_weight=anneal, **inputs)
        self._log_list(logs, batch_size, on_step=True)
        all_logs = list(logs)
        if len(self.loss_unsupervised):
            unsup_size = batch_size
            unsup_inputs = inputs
            if unlabeled is not None:
                unsup_inputs = self.unlabeled_loss_inputs(
                    unlabeled, self.loss_unsupervised.declared_inputs())
                unsup_size = unsup_inputs["keypoints_pred"].shape[0]
            unsup, unsup_logs = self.loss_unsupervised(stage="train", anneal_weight=anneal,
                                                       **unsup_inputs)
            total = total + unsup
            all_logs += unsup_logs
            self._log_list(unsup_logs, unsup_size, on_step=True)
            self.log("train_unsupervised_loss", unsup, batch_size=unsup_size)
        check_finite_loss(self, total, all_logs)
        self.log("train_loss", total, prog_bar=True, batch_size=batch_size)
        self.log("anneal_weight", float(anneal), batch_size=batch_size)
        self.log("train_pixel_error", _mean(*_pixel_error_sum(inputs)).float(), prog_bar=True,
                 batch_size=batch_size)
        for name, values in (batch.get("aug_stats") or {}).items():
            self.log(f"train_{name}", values.float().sum(), on_step=False, on_epoch=True,
                     reduce_fx="sum", batch_size=batch_size)
        return total

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        wanted = self.loss_supervised.declared_inputs() | self.loss_unsupervised.declared_inputs()
        inputs = self.loss_inputs(batch, wanted)
        batch_size = batch["images"].shape[0]
        full, logs = self.loss_supervised(stage=stage, anneal_weight=None, **inputs)
        annealed, _ = self.loss_supervised(stage=stage, anneal_weight=self.anneal_weight,
                                           **inputs)
        if len(self.loss_unsupervised):
            unsup_full, unsup_logs = self.loss_unsupervised(stage=stage, anneal_weight=None,
                                                            **inputs)
            full = full + unsup_full
            logs += unsup_logs
        self._log_list(logs, batch_size, on_step=False)
        # sync_dist: under DDP the best checkpoint is chosen on all ranks' validation data
        self.log(f"{stage}_supervised_loss", full, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log(f"{stage}_supervised_loss_annealed", annealed, batch_size=batch_size,
                 sync_dist=True)
        error_sum, error_count = _pixel_error_sum(inputs)
        self._pixel_errors[0] += error_sum
        self._pixel_errors[1] += error_count

    def _start_pixel_error(self) -> None:
        self._pixel_errors = [torch.zeros((), device=self.device, dtype=torch.float64),
                              torch.zeros((), device=self.device, dtype=torch.float64)]

    def _log_pixel_error(self, stage: str) -> None:
        """``{stage}_pixel_error``: the mean over every keypoint measured in the epoch, on all
        ranks; NaN when none was (no prediction, or no label), never 0."""
        totals = torch.stack(self._pixel_errors)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
        self.log(f"{stage}_pixel_error", _mean(totals[0], totals[1]).float(), prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self._start_pixel_error()

    def on_validation_epoch_end(self) -> None:
        self._log_pixel_error("val")

    def on_test_epoch_start(self) -> None:
        self._start_pixel_error()

    def on_test_epoch_end(self) -> None:
        self._log_pixel_error("test")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # --------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        training = self.config.training
        lr = training.optimizer_params.learning_rate
        groups = []
        for name, params in self.backbone.param_groups().items():
            if params:
                groups.append({"params": params, "name": name, "lr": lr})
        optimizer_cls = torch.optim.AdamW if training.optimizer == "AdamW" else torch.optim.Adam
        optimizer = optimizer_cls(groups, lr=lr,
                                  weight_decay=training.optimizer_params.weight_decay)
        if training.lr_scheduler == "none":
            return optimizer
        if training.milestone_steps:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, training.milestone_steps,
                gamma=training.lr_scheduler_params.multisteplr.gamma)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, training.lr_scheduler_params.multisteplr.milestones,
            gamma=training.lr_scheduler_params.multisteplr.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "epoch"}}


def _pixel_error_sum(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, count)`` of the Euclidean distances (frame pixels) between augmented predictions
    and labels, over the keypoints where both exist (float64 scalars; no device sync). A mean
    is ``sum / count``: NaN when nothing was measured - never 0, which would look perfect."""
    targ = inputs["keypoints_targ"].reshape(inputs["keypoints_targ"].shape[0], -1, 2)
    pred = inputs["keypoints_pred_augmented"].reshape_as(targ)
    dist = (pred.detach() - targ).norm(dim=-1).double()
    valid = torch.isfinite(dist)
    return torch.where(valid, dist, 0.0).sum(), valid.sum().double()


def _mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count``, NaN when ``count`` is 0 (nothing measured is not an error of 0)."""
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, torch.nan))
