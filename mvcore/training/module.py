"""``MultiviewPoseModule``: backbone plugin + loss factories in one LightningModule.

Per batch: images ``(B, V, 3, H, W)`` -> backbone -> heatmaps ``(B, V, K, h, w)`` -> sub-pixel
keypoints and confidences -> frame pixels -> (when calibrated) 3D by batched triangulation ->
the loss-input dict of ``mvcore.losses.base`` -> LossFactory.

Training batches are either a labelled batch or, when the data module serves unlabelled video
(``mvcore.data.unlabeled``), ``{"labeled": batch, "unlabeled": clip}``. Supervised losses
always use the labelled batch; unsupervised losses use the clip when there is one (its T
frames play the batch dimension, in temporal order, without targets), else the labelled batch
(the behaviour without videos). Validation and test apply both to the labelled batch.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from mvcore.data.bbox import model_to_frame
from mvcore.data.heatmaps import heatmap_to_keypoints
from mvcore.geometry import project_points, triangulate, triangulate_pairs
from mvcore.losses.base import LossContext
from mvcore.losses.factory import LossFactory

#: loss inputs every model produces
BASE_INPUTS = {
    "heatmaps_targ", "heatmaps_pred", "keypoints_targ", "keypoints_pred",
    "keypoints_pred_augmented", "confidences",
}
#: loss inputs produced only for calibrated projects
CALIBRATED_INPUTS = {
    "keypoints_targ_3d", "keypoints_pred_3d", "keypoints_pred_2d_reprojected",
    "intrinsics", "extrinsics", "distortions", "has_calibration",
}


def apply_homography(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Map ``(..., K, 2)`` points with ``(..., 3, 3)`` homographies."""
    ones = torch.ones_like(points[..., :1])
    mapped = torch.cat([points, ones], -1) @ matrices.transpose(-1, -2)
    return mapped[..., :2] / mapped[..., 2:3]


class MultiviewPoseModule(pl.LightningModule):
    """Trains a registered backbone with the configured losses."""

    def __init__(self, config: Any, components: Any, context: LossContext,
                 data_module: Any = None, build_losses: bool = True) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.num_views = context.num_views
        self.num_keypoints = context.num_keypoints
        self.image_size = (context.image_height, context.image_width)
        backbone_cls = components.backbones.get(config.model.model_type,
                                                key_path="model.model_type")
        params = backbone_cls.validate_config(config)
        self.backbone = backbone_cls(config, params, self.num_views, self.num_keypoints)
        produced = set(BASE_INPUTS) | (CALIBRATED_INPUTS if context.has_calibration else set())
        self.produced_inputs = produced
        if build_losses:
            self.loss_supervised = LossFactory.from_config(
                config, components.losses, supervised=True, produced_inputs=produced,
                data_module=data_module, context=context)
            self.loss_unsupervised = LossFactory.from_config(
                config, components.losses, supervised=False, produced_inputs=produced,
                data_module=data_module, context=context)
        else:  # inference only: no PCA fitting, no loss buffers needed
            self.loss_supervised = LossFactory()
            self.loss_unsupervised = LossFactory()
        names = self.loss_supervised.names() + self.loss_unsupervised.names()
        self.needs_reprojection = "supervised_reprojection_heatmap_mse" in names
        self.needs_3d = context.has_calibration and any(
            "3d" in key or "reprojected" in key
            for factory in (self.loss_supervised, self.loss_unsupervised)
            for loss in factory.losses.values()
            for key in _required(loss)
        )
        # the annealing weight (callbacks.anneal_weight writes it); a buffer so it is saved
        self.register_buffer("anneal_weight", torch.tensor(1.0))
        self.steps_per_epoch = 1
        if build_losses and getattr(data_module, "use_unlabeled", False) is None:
            # the data module serves unlabelled clips only for active unsupervised losses
            data_module.use_unlabeled = len(self.loss_unsupervised) > 0

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, H, W)`` -> heatmaps ``(B, V, K, h, w)``."""
        return self.backbone(images)

    def predict_keypoints(self, images: torch.Tensor, bbox: torch.Tensor | None = None
                          ) -> dict[str, torch.Tensor]:
        """Heatmaps, keypoints in model pixels and (with ``bbox (B, V, 4)``) frame pixels."""
        heatmaps = self(images)
        keypoints, confidences = heatmap_to_keypoints(heatmaps, self.image_size)
        out = {"heatmaps": heatmaps, "keypoints_model": keypoints, "confidences": confidences}
        if bbox is not None:
            out["keypoints_frame"] = model_to_frame(keypoints, bbox, self.image_size)
        return out

    def prediction_inputs(
        self,
        images: torch.Tensor,
        bbox: torch.Tensor,
        transforms: torch.Tensor | None = None,
        cameras: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the model and build the target-free loss inputs (``mvcore.losses.base`` names).

        ``images (B, V, 3, H, W)``, ``bbox (B, V, 4)``, optional ``transforms (B, V, 3, 3)``
        (original -> augmented model pixels) and ``cameras`` with ``intrinsics (B, V, 3, 3)``,
        ``extrinsics (B, V, 3, 4)``, ``distortions (B, V, 5)``, ``has_calibration (B,)`` (used
        when the project is calibrated). Returns ``heatmaps_pred (B, N, h, w)``,
        ``keypoints_pred`` / ``keypoints_pred_augmented (B, 2N)`` frame pixels,
        ``confidences (B, N)``, and for calibrated projects the cameras, ``has_calibration (B,)``
        (False for frames of a session without calibration: their cameras are placeholders)
        and (when a loss needs them) ``keypoints_pred_3d`` / ``keypoints_pred_2d_reprojected``
        (NaN for those frames).
        """
        b, v, k = images.shape[0], self.num_views, self.num_keypoints
        out = self.predict_keypoints(images, bbox)
        pred_aug_frame = out["keypoints_frame"]  # (B, V, K, 2), augmented space
        if transforms is not None:
            pred_orig_model = apply_homography(out["keypoints_model"],
                                               torch.linalg.inv(transforms.to(pred_aug_frame)))
            pred_orig_frame = model_to_frame(pred_orig_model, bbox, self.image_size)
        else:
            pred_orig_frame = pred_aug_frame
        inputs: dict[str, torch.Tensor] = {
            "heatmaps_pred": out["heatmaps"].reshape(b, v * k, *out["heatmaps"].shape[-2:]),
            "keypoints_pred": pred_orig_frame.reshape(b, -1),
            "keypoints_pred_augmented": pred_aug_frame.reshape(b, -1),
            "confidences": out["confidences"].reshape(b, -1),
        }
        if self.context.has_calibration and cameras is not None:
            intrinsics = cameras["intrinsics"].to(pred_aug_frame)
            extrinsics = cameras["extrinsics"].to(pred_aug_frame)
            distortions = cameras["distortions"].to(pred_aug_frame)
            calibrated = cameras["has_calibration"].bool().reshape(b, 1, 1, 1)
            inputs.update(intrinsics=intrinsics, extrinsics=extrinsics, distortions=distortions,
                          has_calibration=calibrated.reshape(b))
            if self.needs_3d:
                pairs = triangulate_pairs(pred_aug_frame, intrinsics, extrinsics, distortions)
                inputs["keypoints_pred_3d"] = torch.where(
                    calibrated, pairs, torch.full_like(pairs, float("nan")))
            if self.needs_reprojection:
                points_3d = triangulate(pred_aug_frame, intrinsics, extrinsics, distortions)
                reprojected = project_points(points_3d, intrinsics, extrinsics, distortions)
                model = _frame_to_model(reprojected, bbox, self.image_size)
                model = torch.where(calibrated, model, torch.full_like(model, float("nan")))
                inputs["keypoints_pred_2d_reprojected"] = model.reshape(b, v * k, 2)
        return inputs

    def loss_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the model on a labelled batch: ``prediction_inputs`` plus the targets."""
        b, v, k = batch["images"].shape[0], self.num_views, self.num_keypoints
        inputs = self.prediction_inputs(batch["images"], batch["bbox"],
                                        batch.get("transforms"), batch)
        dtype_ref = inputs["keypoints_pred_augmented"]
        targ_frame = model_to_frame(batch["keypoints"].to(dtype_ref), batch["bbox"],
                                    self.image_size)
        inputs["heatmaps_targ"] = batch["heatmaps"].reshape(b, v * k,
                                                            *batch["heatmaps"].shape[-2:])
        inputs["keypoints_targ"] = targ_frame.reshape(b, -1)
        if self.context.has_calibration:
            inputs["keypoints_targ_3d"] = batch["keypoints_3d"].to(dtype_ref)
        return inputs

    def unlabeled_loss_inputs(self, clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Target-free loss inputs of one unlabelled clip (a batch of 1 clip).

        ``frames (1, T, V, 3, H, W)``, ``bbox (1, T, V, 4)`` and cameras ``(1, T, V, ...)`` ->
        ``prediction_inputs`` with the T consecutive frames as the batch (temporal order)."""
        cameras = {key: clip[key][0] for key in
                   ("intrinsics", "extrinsics", "distortions", "has_calibration") if key in clip}
        return self.prediction_inputs(clip["frames"][0], clip["bbox"][0], None,
                                      cameras if len(cameras) == 4 else None)

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
        inputs = self.loss_inputs(batch)
        anneal = self.anneal_weight
        total, logs = self.loss_supervised(stage="train", anneal_weight=anneal, **inputs)
        self._log_list(logs, batch_size, on_step=True)
        if len(self.loss_unsupervised):
            unsup_size = batch_size
            unsup_inputs = inputs
            if unlabeled is not None:
                unsup_inputs = self.unlabeled_loss_inputs(unlabeled)
                unsup_size = unsup_inputs["keypoints_pred"].shape[0]
            unsup, unsup_logs = self.loss_unsupervised(stage="train", anneal_weight=anneal,
                                                       **unsup_inputs)
            total = total + unsup
            self._log_list(unsup_logs, unsup_size, on_step=True)
            self.log("train_unsupervised_loss", unsup, batch_size=unsup_size)
        self.log("train_loss", total, prog_bar=True, batch_size=batch_size)
        self.log("anneal_weight", float(anneal), batch_size=batch_size)
        self.log("train_pixel_error", _pixel_error(inputs), prog_bar=True,
                 batch_size=batch_size)
        if "aug_skipped" in batch:
            self.log("train_aug_skipped", batch["aug_skipped"].float().sum(), on_step=False,
                     on_epoch=True, reduce_fx="sum", batch_size=batch_size)
        return total

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        inputs = self.loss_inputs(batch)
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
        self.log(f"{stage}_pixel_error", _pixel_error(inputs), prog_bar=True,
                 batch_size=batch_size, sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
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


def _required(loss: Any) -> set[str]:
    from mvcore.losses.base import required_inputs

    return required_inputs(type(loss))


def _frame_to_model(points: torch.Tensor, bbox: torch.Tensor, image_size: tuple[int, int]
                    ) -> torch.Tensor:
    from mvcore.data.bbox import frame_to_model

    return frame_to_model(points, bbox, image_size)


def _pixel_error(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean Euclidean distance (frame pixels) between augmented predictions and labels."""
    targ = inputs["keypoints_targ"].reshape(inputs["keypoints_targ"].shape[0], -1, 2)
    pred = inputs["keypoints_pred_augmented"].reshape_as(targ)
    dist = (pred.detach() - targ).norm(dim=-1)
    valid = torch.isfinite(dist)
    if not valid.any():
        return dist.new_zeros(())
    return dist[valid].mean()
