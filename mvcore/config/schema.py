"""Pydantic models of the config file (the shape check, pass 1).

Keys and defaults follow Lightning Pose's multiview config (``config_default_multiview.yaml``)
so its configs load unchanged; keys that Lightning Pose reads but mvcore does not need
(``dali``, ``hydra``) are accepted and ignored. Every model forbids unknown keys.

The schema carries only what the core reads. Lightning Pose keys that only one component
reads (``training.patch_mask``, ``data.mirrored_column_matches``, ``model.backbone``, ...) are
taken out before this check and handed to that component's own parameters
(``mvcore.config.lightning_pose``).

Ranges are part of the shape: a value that would crash or silently misbehave later (a batch
size of 0, a negative learning rate, ``max_epochs: -1``, which Lightning reads as "forever")
fails here, so ``mvcore config check`` catches it before anything runs. NaN and infinity are
refused for every float. The ranges are documented in ``docs/config.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: the seeds feed numpy's and Lightning's generators, which take unsigned 32-bit seeds
_MAX_SEED = 2**32 - 1
#: ``training.precision`` values Lightning accepts (YAML may give 16 / 32 / 64 as numbers)
PRECISIONS = ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true",
              "16-mixed", "bf16-mixed")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
    #: mvcore: the body's edges as pairs of keypoint names, for figures (the 3D view of
    #: ``mvcore report``); no effect on training
    skeleton: list[tuple[str, str]] | None = None

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
        if self.skeleton and self.keypoint_names is not None:
            unknown = [n for e in self.skeleton for n in e if n not in self.keypoint_names]
            if unknown:
                raise ValueError(
                    f"data.skeleton names {sorted(set(unknown))}, which data.keypoint_names "
                    "does not have; give edges as pairs of keypoint names")
        return self


class MultiStepParams(_Strict):
    milestones: list[NonNegativeInt] = Field(default_factory=lambda: [150, 200, 250])
    gamma: float = Field(0.5, gt=0.0)


class LrSchedulerParams(_Strict):
    multisteplr: MultiStepParams = Field(default_factory=MultiStepParams)


class OptimizerParams(_Strict):
    learning_rate: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)


class TrainingConfig(_Strict):
    imgaug: str | dict[str, Any] = "dlc"
    imgaug_3d: bool | None = True
    imgaug_hflip: bool = False
    #: mvcore: parameters of augmenters by name, e.g. {imgaug_3d: {scale: [0.8, 1.2]}}
    augmentation_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train_batch_size: PositiveInt = 16
    val_batch_size: PositiveInt = 32
    test_batch_size: PositiveInt = 32
    train_prob: float = Field(0.95, gt=0.0, le=1.0)
    val_prob: float | None = Field(0.05, ge=0.0, lt=1.0)
    train_frames: float = Field(1, gt=0.0)
    num_gpus: NonNegativeInt = 1
    num_workers: NonNegativeInt = 2
    num_nodes: PositiveInt = 1
    #: mvcore: devices per node for every accelerator (GPUs, or processes on the CPU), more
    #: than one (or num_nodes > 1) trains with Lightning's DDP; set, it wins over num_gpus;
    #: None: num_gpus on a GPU, 1 on the CPU
    devices: PositiveInt | None = None
    unfreezing_epoch: NonNegativeInt | None = 20
    unfreezing_step: NonNegativeInt | None = None
    min_epochs: NonNegativeInt | None = 300
    #: None: Lightning's default (1000); -1 (Lightning's "forever") is refused
    max_epochs: PositiveInt | None = 300
    min_steps: NonNegativeInt | None = None
    max_steps: PositiveInt | None = None
    milestone_steps: list[NonNegativeInt] | None = None
    log_every_n_steps: PositiveInt = 10
    check_val_every_n_epoch: PositiveInt = 5
    #: a number of batches (an int >= 1) or a fraction of an epoch in (0, 1]
    val_check_interval: int | float | None = None
    #: 0 or None: no extra checkpoints
    ckpt_every_n_epochs: NonNegativeInt | None = None
    early_stopping: bool = False
    early_stop_patience: NonNegativeInt = 3
    rng_seed_data_pt: int = Field(0, ge=0, le=_MAX_SEED)
    rng_seed_model_pt: int = Field(0, ge=0, le=_MAX_SEED)
    optimizer: Literal["Adam", "AdamW"] = "Adam"
    optimizer_params: OptimizerParams = Field(default_factory=OptimizerParams)
    lr_scheduler: Literal["multisteplr", "none"] = "multisteplr"
    lr_scheduler_params: LrSchedulerParams = Field(default_factory=LrSchedulerParams)
    uniform_heatmaps_for_nan_keypoints: bool = True
    #: a number of batches (an int >= 1) or a fraction of them in (0, 1]
    limit_train_batches: int | float | None = None
    accumulate_grad_batches: PositiveInt = 1
    profiler: str | None = None
    #: mvcore: "32", "16-mixed" or "bf16-mixed" (mixed precision on GPU); any of PRECISIONS
    precision: str = "32"
    #: mvcore: "auto" uses a GPU when there is one, else the CPU
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    #: mvcore: heatmap target width in heatmap pixels (Lightning Pose: fixed 1.25)
    heatmap_sigma: float = Field(1.25, gt=0.0)
    #: mvcore: frames per unlabelled video clip for the unsupervised losses (Lightning Pose
    #: ``dali.base.train.sequence_length``, 32 there)
    unlabeled_clip_length: int = Field(16, ge=2)
    #: mvcore: unlabelled clips per epoch; None = as many as labelled batches
    unlabeled_clips_per_epoch: int | None = Field(None, ge=1)

    @field_validator("val_check_interval", "limit_train_batches")
    @classmethod
    def _batches_or_fraction(cls, value: int | float | None) -> int | float | None:
        if value is None:
            return value
        if isinstance(value, int) and value < 1 or isinstance(value, float) and not (
                0.0 < value <= 1.0):
            raise ValueError(f"must be a number of batches (an int >= 1) or a fraction in "
                             f"(0, 1], got {value!r}")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _known_precision(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML reads `precision: 16` as a number
        if isinstance(value, str) and value not in PRECISIONS:
            raise ValueError(f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
        return value

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

    def devices_per_node(self, on_gpu: bool) -> int:
        """Devices (processes) per node: ``devices`` when set, else ``num_gpus`` on a GPU
        and 1 on the CPU. Training and the per-device batch sizes both use it."""
        if self.devices is not None:
            return self.devices
        return max(1, self.num_gpus or 1) if on_gpu else 1


class ModelConfig(_Strict):
    losses_to_use: list[str] | None = Field(default_factory=list)
    model_type: str = "heatmap_multiview_transformer"
    heatmap_loss_type: str = "mse"
    model_name: str = "mvcore_model"
    checkpoint: str | None = None
    #: mvcore: where heatmap pixel ``j`` sits in the model image: ``centred`` at
    #: ``j * s + (s - 1) / 2`` (mvcore's targets and read-out, ``s = 2**downsample_factor``)
    #: or ``lightning_pose`` at ``j * s`` (what networks trained by Lightning Pose learned;
    #: ``mvcore import-lightning-pose`` sets it)
    heatmap_grid: Literal["centred", "lightning_pose"] = "centred"
    #: mvcore: parameters of the backbone plugin (validated by its own model)
    backbone_params: dict[str, Any] = Field(default_factory=dict)
    lightning_pose_version: str | None = None


class AnnealWeightConfig(_Strict):
    attr_name: str = "total_unsupervised_importance"
    init_val: float = Field(0.0, ge=0.0)
    increase_factor: float = Field(0.01, ge=0.0)
    final_val: float = Field(1.0, ge=0.0)
    freeze_until_epoch: NonNegativeInt = 60  # the seeds' default schedule: full weight at 160


class CallbacksConfig(_Strict):
    anneal_weight: AnnealWeightConfig = Field(default_factory=AnnealWeightConfig)


class EvalConfig(_Strict):
    predict_vids_after_training: bool = False
    test_videos_directory: str | None = None
    save_vids_after_training: bool = False
    colormap: str = "cool"
    confidence_thresh_for_vid: float = Field(0.9, ge=0.0, le=1.0)
    hydra_paths: list[str] | None = None
    #: mvcore: number of labelled-frame PNGs written after training
    num_labeled_frame_plots: NonNegativeInt = 4


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
    #: when Lightning Pose trained the model (its model directories' config.yaml); kept as is
    creation_datetime: Any = None
    #: where the config came from (set by load_config; relative data paths resolve against it)
    config_dir: str | None = None
    #: Lightning Pose keys read by components, by dotted key (set by parse_config)
    lightning_pose: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @property
    def num_views(self) -> int:
        return len(self.data.view_names)
