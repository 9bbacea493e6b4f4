"""The ``Loss`` base class every loss plugin subclasses.

A loss follows the recipe of the Lightning Pose "add a loss" guide:
``remove_nans`` -> ``compute_loss`` -> ``rectify_epsilon`` -> ``reduce_loss`` -> ``log_loss``,
and ``__call__(..., stage, **kwargs)`` returns ``(weighted scalar, logs)`` with
``weight = 1 / (2 * exp(log_weight))``.

Model outputs reach a loss as keyword arguments (every loss receives the whole dict and takes
what it needs through ``**kwargs``). The standard names and shapes, with ``N = V * K`` keypoints
ordered view-major (all K keypoints of view 0, then view 1, ...):

- ``keypoints_targ``, ``keypoints_pred``: ``(B, 2N)`` x0, y0, x1, y1, ... in frame pixels
- ``keypoints_pred_augmented``: ``(B, 2N)`` predictions still in augmented model coordinates
- ``heatmaps_targ``, ``heatmaps_pred``: ``(B, N, h, w)`` (each map sums to 1; all-zero = no label)
- ``confidences``: ``(B, N)``
- ``keypoints_targ_3d``: ``(B, K, 3)``; ``keypoints_pred_3d``: ``(B, P, K, 3)`` for P view pairs
- ``keypoints_pred_2d_reprojected``: ``(B, N, 2)`` in model pixels
- ``intrinsics (B, V, 3, 3)``, ``extrinsics (B, V, 3, 4)``, ``distortions (B, V, 5)``: anipose
  cameras; ``has_calibration (B,)`` bool: False where a frame's session has no calibration
  (its cameras are placeholders and its 3D inputs NaN)

The required keyword arguments of ``__call__`` (or ``forward``) are the loss's declared inputs;
the LossFactory checks them against what the model produces before training starts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

Stage = Literal["train", "val", "test"]
LogList = list[dict[str, Any]]


class LossParams(BaseModel):
    """Config parameters of a loss (``losses.<name>`` in the YAML); subclass to add fields.

    Unknown keys are rejected, so a typo in the config is an error, not a silent default.
    """

    model_config = ConfigDict(extra="forbid")

    log_weight: float | None = 0.0
    epsilon: float | list[float] | None = 0.0


@dataclass
class LossContext:
    """Facts about the project and model that a loss may need at construction time."""

    view_names: list[str] = field(default_factory=list)
    keypoint_names: list[str] = field(default_factory=list)
    image_height: int = 0  # model input size (H, W)
    image_width: int = 0
    heatmap_height: int = 0  # (h, w) = (H, W) / 2**downsample_factor
    heatmap_width: int = 0
    downsample_factor: int = 2
    has_calibration: bool = False
    mirrored_column_matches: list[list[int]] | None = None
    columns_for_singleview_pca: list[int] | None = None

    @property
    def num_views(self) -> int:
        return len(self.view_names)

    @property
    def num_keypoints(self) -> int:
        """Keypoints per view (K)."""
        return len(self.keypoint_names)


class Loss(nn.Module):
    """Base class of all losses.

    Subclasses set ``loss_name`` (the config key), optionally a ``Params`` model, and implement
    ``__call__`` (as in the Lightning Pose guide) or ``forward``. Being an ``nn.Module``, a loss
    that owns tensors (for example PCA bases) registers them as buffers so they follow
    ``.to(device)`` and are saved in checkpoints.
    """

    loss_name: ClassVar[str] = ""
    Params: ClassVar[type[LossParams]] = LossParams
    #: supervised losses are active when listed under ``losses:`` with a non-null log_weight;
    #: unsupervised ones only when also named in ``model.losses_to_use``
    supervised: ClassVar[bool] = True
    #: annealed losses are multiplied by the annealing weight (callbacks.anneal_weight)
    annealed: ClassVar[bool] = True
    reduce_methods_dict: ClassVar[dict[str, Any]] = {"mean": torch.mean, "sum": torch.sum}

    def __init__(
        self,
        log_weight: float = 0.0,
        epsilon: float | list[float] | None = 0.0,
        data_module: Any = None,
        context: LossContext | None = None,
        loss_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if loss_name is not None:
            self.loss_name = loss_name  # instance attribute for classes serving several names
        self.context = context or LossContext()
        self.register_buffer("log_weight", torch.tensor(float(log_weight), dtype=torch.float32))
        eps = 0.0 if epsilon is None else epsilon
        self.register_buffer("epsilon", torch.as_tensor(eps, dtype=torch.float32))

    @property
    def weight(self) -> torch.Tensor:
        """``1 / (2 * exp(log_weight))``: log_weight 0 -> 0.5, 3 -> 0.0249."""
        return 1.0 / (2.0 * torch.exp(self.log_weight))

    def remove_nans(self, **kwargs: Any) -> Any:
        """Drop entries without labels (NaN or all-zero targets) before computing the loss."""
        raise NotImplementedError(f"{type(self).__name__} does not implement remove_nans")

    def compute_loss(self, **kwargs: Any) -> torch.Tensor:
        """Element-wise loss (per keypoint, per sample, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute_loss")

    def rectify_epsilon(self, loss: torch.Tensor) -> torch.Tensor:
        """Epsilon-insensitive loss ``relu(loss - epsilon)``; a per-keypoint epsilon list
        broadcasts along the last dimension."""
        return torch.relu(loss - self.epsilon.to(dtype=loss.dtype))

    def reduce_loss(self, loss: torch.Tensor, method: str = "mean") -> torch.Tensor:
        """Mean or sum over all elements. An empty tensor reduces to a zero that keeps the graph
        (the public implementation returns NaN there)."""
        if method not in self.reduce_methods_dict:
            allowed = sorted(self.reduce_methods_dict)
            raise KeyError(f"reduce method {method!r} is not one of {allowed}")
        if loss.numel() == 0:
            return loss.sum() * 0.0
        return self.reduce_methods_dict[method](loss)

    def log_loss(self, loss: torch.Tensor, stage: Stage | None) -> LogList:
        """Two log entries: ``{stage}_{name}_loss`` (unweighted) and ``{name}_weight``."""
        return [
            {"name": f"{stage}_{self.loss_name}_loss", "value": loss.detach(), "prog_bar": True},
            {"name": f"{self.loss_name}_weight", "value": self.weight.detach()},
        ]

    def keypoint_errors(self, keypoints_pred: torch.Tensor) -> torch.Tensor | None:
        """Optional diagnostic written after training: a per-keypoint error ``(n, N)`` for
        predictions ``(n, 2N)`` in frame pixels (NaN where undefined), saved as
        ``predictions_<view>_<loss_name>_error.csv``. None (the default) writes nothing."""
        return None

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, LogList]:
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__ or forward returning "
            "(weighted scalar loss, logs)"
        )

    def extra_repr(self) -> str:
        return f"loss_name={self.loss_name!r}, log_weight={float(self.log_weight):g}"


def _entry_callable(loss_cls: type[Loss]) -> Any:
    """The method that receives the model outputs: an overridden ``__call__`` or ``forward``."""
    for klass in loss_cls.__mro__:
        if klass in (Loss, nn.Module, object):
            break
        if "__call__" in vars(klass):
            return vars(klass)["__call__"]
        if "forward" in vars(klass):
            return vars(klass)["forward"]
    return loss_cls.forward


def required_inputs(loss_cls: type[Loss]) -> set[str]:
    """Names of the model outputs a loss cannot run without (its required keyword arguments)."""
    signature = inspect.signature(_entry_callable(loss_cls))
    names = set()
    for name, param in signature.parameters.items():
        if name in {"self", "stage"}:
            continue
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if param.default is inspect.Parameter.empty:
            names.add(name)
    return names
