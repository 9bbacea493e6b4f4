"""Pydantic models of the config file (the shape check, pass 1).

Keys and defaults follow Lightning Pose's multiview config (``config_default_multiview.yaml``)
so its configs load unchanged; keys that Lightning Pose reads but mvcore does not need
(``dali``, ``hydra``) are accepted and ignored. Every model forbids unknown keys.

The schema carries only what the core reads. Lightning Pose keys that only one component
reads (``training.patch_mask``, ``data.mirrored_column_matches``, ``model.backbone``, ...) are
taken out before this check and handed to that component's own parameters
(``mvcore.config.lightning_pose``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImageResizeDims(_Strict):
    height: int = 256
    width: int = 256

    @field_validator("height", "width")
    @classmethod
    def _positive_multiple_of_16(cls, value: int) -> int:
        if value <= 0 or value % 16:
            raise ValueError(f"must be a positive multiple of 16 (ViT patch size), got {value}")
        return value


class DataConfig(_Strict):
    image_resize_dims: ImageResizeDims = Field(default_factory=ImageResizeDims)
    data_dir: str = "."
    video_dir: str | None = None
    csv_file: list[str] | str = Field(default_factory=list)
    bbox_file: list[str] | str | None = None
    view_names: list[str] = Field(default_factory=list)
    num_keypoints: int | None = None
    keypoint_names: list[str] | None = None
    downsample_factor: Literal[1, 2, 3] = 2
    camera_params_file: str | None = None
    #: mvcore: calibration TOML for every frame when there is no per-session calibration
    calibration_file: str | None = None
    #: mvcore: views of a video session whose frame counts differ: "strict" refuses them,
    #: "truncate" uses the frames common to all views (the videos must start together)
    video_sync: Literal["strict", "truncate"] = "strict"

    @field_validator("csv_file", "bbox_file", mode="before")
    @classmethod
    def _single_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.view_names and self.csv_file and len(self.view_names) != len(self.csv_file):
            raise ValueError(
                f"data.view_names has {len(self.view_names)} entries but data.csv_file has "
                f"{len(self.csv_file)}; give one label CSV per view, in view order"
            )
        if self.bbox_file and self.view_names and len(self.bbox_file) != len(self.view_names):
            raise ValueError("data.bbox_file needs one file per view, in the order of view_names")
        if len(self.view_names) == 1:
            raise ValueError("data.view_names has a single view; a multi-view project needs >= 2")
        if len(set(self.view_names)) != len(self.view_names):
            raise ValueError(f"data.view_names has duplicates: {self.view_names}")
        if self.keypoint_names is not None and self.num_keypoints is not None:
            if len(self.keypoint_names) != self.num_keypoints:
                raise ValueError(
                    f"data.num_keypoints is {self.num_keypoints} but data.keypoint_names has "
                    f"{len(self.keypoint_names)} names"
                )
        if self.num_keypoints is not None and self.num_keypoints <= 0:
            raise ValueError("data.num_keypoints must be > 0")
        return self


class MultiStepParams(_Strict):
    milestones: list[int] = Field(default_factory=lambda: [150, 200, 250])
    gamma: float = 0.5


class LrSchedulerParams(_Strict):
    multisteplr: MultiStepParams = Field(default_factory=MultiStepParams)


class OptimizerParams(_Strict):
    learning_rate: float = 5e-5
    weight_decay: float = 0.0


class TrainingConfig(_Strict):
    imgaug: str | dict[str, Any] = "dlc"
    imgaug_3d: bool | None = True
    imgaug_hflip: bool = False
    #: mvcore: parameters of augmenters by name, e.g. {imgaug_3d: {scale: [0.8, 1.2]}}
    augmentation_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train_batch_size: int = 16
    val_batch_size: int = 32
    test_batch_size: int = 32
    train_prob: float = 0.95
    val_prob: float | None = 0.05
    train_frames: float = 1
    num_gpus: int = 1
    num_workers: int = 2
    num_nodes: int = 1
    unfreezing_epoch: int | None = 20
    unfreezing_step: int | None = None
    min_epochs: int | None = 300
    max_epochs: int | None = 300
    min_steps: int | None = None
    max_steps: int | None = None
    milestone_steps: list[int] | None = None
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 5
    val_check_interval: float | int | None = None
    ckpt_every_n_epochs: int | None = None
    early_stopping: bool = False
    early_stop_patience: int = 3
    rng_seed_data_pt: int = 0
    rng_seed_model_pt: int = 0
    optimizer: Literal["Adam", "AdamW"] = "Adam"
    optimizer_params: OptimizerParams = Field(default_factory=OptimizerParams)
    lr_scheduler: Literal["multisteplr", "none"] = "multisteplr"
    lr_scheduler_params: LrSchedulerParams = Field(default_factory=LrSchedulerParams)
    uniform_heatmaps_for_nan_keypoints: bool = True
    limit_train_batches: int | float | None = None
    accumulate_grad_batches: int = 1
    profiler: str | None = None
    #: mvcore: "32", "16-mixed" or "bf16-mixed" (mixed precision on GPU)
    precision: str = "32"
    #: mvcore: "auto" uses a GPU when there is one, else the CPU
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    #: mvcore: heatmap target width in heatmap pixels (Lightning Pose: fixed 1.25)
    heatmap_sigma: float = 1.25
    #: mvcore: frames per unlabelled video clip for the unsupervised losses (Lightning Pose
    #: ``dali.base.train.sequence_length``, 32 there)
    unlabeled_clip_length: int = Field(16, ge=2)
    #: mvcore: unlabelled clips per epoch; None = as many as labelled batches
    unlabeled_clips_per_epoch: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.imgaug_hflip:
            raise ValueError("training.imgaug_hflip is not supported for multi-view models")
        if self.val_prob is not None and self.train_prob + self.val_prob > 1.0 + 1e-9:
            raise ValueError(
                f"training.train_prob + training.val_prob = {self.train_prob + self.val_prob} "
                "must be <= 1"
            )
        if self.unfreezing_epoch is not None and self.unfreezing_step is not None:
            # step keys win, as in Lightning Pose's step mode
            self.__dict__["unfreezing_epoch"] = None
        if self.ckpt_every_n_epochs and self.ckpt_every_n_epochs % self.check_val_every_n_epoch:
            raise ValueError(
                "training.ckpt_every_n_epochs must be a multiple of check_val_every_n_epoch"
            )
        return self


class ModelConfig(_Strict):
    losses_to_use: list[str] | None = Field(default_factory=list)
    model_type: str = "heatmap_multiview_transformer"
    heatmap_loss_type: str = "mse"
    model_name: str = "mvcore_model"
    checkpoint: str | None = None
    #: mvcore: parameters of the backbone plugin (validated by its own model)
    backbone_params: dict[str, Any] = Field(default_factory=dict)
    lightning_pose_version: str | None = None


class AnnealWeightConfig(_Strict):
    attr_name: str = "total_unsupervised_importance"
    init_val: float = 0.0
    increase_factor: float = 0.01
    final_val: float = 1.0
    freeze_until_epoch: int = 60  # the seeds' default schedule: full weight at epoch 160


class CallbacksConfig(_Strict):
    anneal_weight: AnnealWeightConfig = Field(default_factory=AnnealWeightConfig)


class EvalConfig(_Strict):
    predict_vids_after_training: bool = False
    test_videos_directory: str | None = None
    save_vids_after_training: bool = False
    colormap: str = "cool"
    confidence_thresh_for_vid: float = 0.9
    hydra_paths: list[str] | None = None
    #: mvcore: number of labelled-frame PNGs written after training
    num_labeled_frame_plots: int = 4


class MvConfig(_Strict):
    """The whole config file."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    #: ``losses.<name>``: parameters of each loss, validated by the loss's own Params model
    losses: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    #: Lightning Pose sections mvcore does not use; accepted so LP configs load unchanged
    dali: dict[str, Any] | None = None
    hydra: dict[str, Any] | None = None
    #: where the config came from (set by load_config; relative data paths resolve against it)
    config_dir: str | None = None
    #: Lightning Pose keys read by components, by dotted key (set by parse_config)
    lightning_pose: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def num_views(self) -> int:
        return len(self.data.view_names)
