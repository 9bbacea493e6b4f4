"""Lightning Pose's per-view CNN model (``model_type: heatmap``) as an mvcore backbone.

One CNN with shared weights sees every view: the views are stacked into the batch, each image
goes through the CNN (a timm ResNet or EfficientNet without its pooling and classifier) and
Lightning Pose's heatmap head, and the heatmaps are split back per view. Views do not see each
other inside the network; the 3D losses, the PCA losses and 3D augmentation tie them together
in training, exactly as for the multi-view transformer.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import timm
import torch
from pydantic import field_validator
from torch import nn

from mv_cnn.variants import STRIDE, VARIANTS, CNNVariant, get_variant
from mvcore import (
    Backbone,
    BackboneParams,
    ConfigError,
    Context,
    ParamError,
    read_weights_file,
    strip_common_prefix,
)

logger = logging.getLogger(__name__)

#: parameters of a classifier, which the backbone does not have (left out without a warning)
_CLASSIFIER = ("fc.", "classifier.")


class PerViewCNNParams(BackboneParams):
    """Parameters of ``heatmap`` (``model.backbone_params``).

    All four may also be given where Lightning Pose reads them (``model.backbone``,
    ``model.backbone_pretrained``, ``model.backbone_checkpoint``, ``model.head``)."""

    lightning_pose_keys: ClassVar[dict[str, str]] = {
        "model.backbone": "backbone",
        "model.backbone_pretrained": "backbone_pretrained",
        "model.backbone_checkpoint": "backbone_checkpoint",
        "model.head": "head",
    }

    #: the CNN, by its Lightning Pose name (``mv_cnn.variants.VARIANTS``)
    backbone: str = "resnet50"
    #: start from pretrained weights: timm's ImageNet weights for the ImageNet names, the
    #: ``backbone_checkpoint`` file for the others (they need one)
    backbone_pretrained: bool = True
    #: a local weights file (``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors``) for the CNN,
    #: relative to the config's folder; replaces any hub download
    backbone_checkpoint: str | None = None
    #: the head (Lightning Pose's only one: PixelShuffle, then transposed convolutions)
    head: Literal["heatmap_cnn"] = "heatmap_cnn"

    @field_validator("backbone")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        try:
            get_variant(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("model.backbone: ")) from None
        return value



def _check_params(params: PerViewCNNParams, context: Context) -> CNNVariant:
    """Every check against the project and between parameters: one-line ParamError (or a
    ConfigError naming the data key when the project does not fit)."""
    variant = get_variant(params.backbone)
    height, width = context.image_size
    if height % STRIDE or width % STRIDE or height <= 0 or width <= 0:
        raise ConfigError(
            f"data.image_resize_dims: the per-view CNN needs a height and width that are "
            f"multiples of {STRIDE} (its output stride), got height={height}, width={width}")
    if params.backbone_checkpoint:
        path, tried = context.resolve_path(params.backbone_checkpoint)
        if not path.is_file():
            raise ParamError("backbone_checkpoint", (
                f"file not found: {params.backbone_checkpoint} (tried "
                f"{', '.join(str(p) for p in tried)})"))
    elif params.backbone_pretrained and variant.local_weights_only:
        raise ParamError("backbone", (
            f"{variant.name}'s pretrained weights are not downloaded at run time: fetch "
            f"{variant.source} and set model.backbone_checkpoint to that file (or set "
            "model.backbone_pretrained: false to start from random weights)"))
    return variant




def load_cnn_checkpoint(cnn: nn.Module, path: Path) -> dict[str, int]:
    """Load a local state dict into the timm CNN, non-strictly, and report what matched.

    The key prefix is stripped (mmpose's ``backbone.``, SimCLR's ``encoder.``), classifier
    weights are left out, tensors of the wrong shape skipped; missing, unexpected and skipped
    tensors are warned about in one line. Nothing matching is a ConfigError."""
    model_state = cnn.state_dict()
    state = strip_common_prefix(read_weights_file(path), set(model_state))
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER)}
    mismatched = [k for k, v in state.items()
                  if k in model_state and v.shape != model_state[k].shape]
    state = {k: v for k, v in state.items() if k not in mismatched}
    result = cnn.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    report = {"loaded": len(state) - len(result.unexpected_keys), "missing": len(missing),
              "unexpected": len(result.unexpected_keys), "shape_mismatch": len(mismatched)}
    if report["loaded"] == 0:
        raise ConfigError(
            f"model.backbone_checkpoint: no tensor of {path} matches this CNN (e.g. "
            f"{', '.join(list(model_state)[:3])}); is it the weights of model.backbone?")
    message = (f"model.backbone_checkpoint {path}: loaded {report['loaded']} tensors, "
               f"{report['missing']} missing, {report['unexpected']} unexpected, "
               f"{report['shape_mismatch']} skipped for shape")
    logger.info(message)
    if report["missing"] or report["unexpected"] or report["shape_mismatch"]:
        examples = [*missing[:2], *result.unexpected_keys[:2], *mismatched[:2]]
        warnings.warn(f"{message} (e.g. {', '.join(examples)})", stacklevel=2)
    return report


def build_cnn(variant: CNNVariant, pretrained: bool, checkpoint: Path | None) -> nn.Module:
    """The timm CNN of ``variant`` without pooling and classifier: ``forward_features`` maps
    ``(N, 3, H, W)`` to ``(N, C, H/32, W/32)``.

    timm's ImageNet weights are fetched (from its hub cache) when ``pretrained``, the variant
    has them and no ``checkpoint`` is given; a ``checkpoint`` is loaded into a randomly
    initialised network."""
    kwargs: dict[str, Any] = {"num_classes": 0, "global_pool": ""}
    if pretrained and checkpoint is None and not variant.local_weights_only:
        try:
            cnn = timm.create_model(variant.hub_name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - offline, hub or cache errors all end here
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise ConfigError(
                f"model.backbone_pretrained: could not get {variant.name}'s ImageNet weights "
                f"(timm {variant.hub_name!r}; is this machine offline?): {reason}; set "
                "model.backbone_checkpoint to a local weights file, or "
                "model.backbone_pretrained: false") from None
    else:
        cnn = timm.create_model(variant.timm_name, pretrained=False, **kwargs)
    if checkpoint is not None:
        load_cnn_checkpoint(cnn, checkpoint)
    return cnn


class CNNHeatmapHead(nn.Module):
    """Lightning Pose's heatmap head for CNNs: ``features (N, C, H/32, W/32) -> logits
    (N, K, H/2**ds, W/2**ds)``.

    ``PixelShuffle(2)`` (C -> C/4 channels, 1/16), then ``4 - ds`` ``ConvTranspose2d(k=3,
    s=2, p=1, output_padding=1)`` layers doubling the resolution (C/4 -> K, then K -> K), no
    nonlinearity between them; Xavier-uniform weights with gain 0.01 and zero biases.
    Softmax is left to the caller."""

    def __init__(self, in_channels: int, num_keypoints: int, downsample_factor: int,
                 init_gain: float = 0.01) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"in_channels must be divisible by 4 for PixelShuffle(2), got "
                             f"{in_channels}")
        layers: list[nn.Module] = [nn.PixelShuffle(2)]
        channels = in_channels // 4
        for _ in range(4 - downsample_factor):
            layers.append(nn.ConvTranspose2d(channels, num_keypoints, kernel_size=3, stride=2,
                                             padding=1, output_padding=1))
            channels = num_keypoints
        self.layers = nn.Sequential(*layers)
        for module in self.layers:
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.xavier_uniform_(module.weight, gain=init_gain)
                nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class PerViewCNN(Backbone):
    """Per-view CNN: ``images (B, V, 3, H, W) -> heatmaps (B, V, K, h, w)``.

    ``(h, w) = (H, W) / 2**ds``; H and W are multiples of 32; every heatmap is a spatial
    softmax. One CNN with shared weights for all views (the views are stacked into the batch,
    ``(B * V, 3, H, W)``), as Lightning Pose's ``model_type: heatmap`` does for multi-view
    data. CNNs (``backbone``, LP ``model.backbone``): ``mv_cnn.variants.VARIANTS``.
    """

    name: ClassVar[str] = "heatmap"
    Params: ClassVar[type[BackboneParams]] = PerViewCNNParams
    params: PerViewCNNParams

    @classmethod
    def validate_context(cls, params: PerViewCNNParams, context: Context) -> None:
        _check_params(params, context)

    @classmethod
    def architecture_only(cls, params: PerViewCNNParams) -> PerViewCNNParams:
        """The same network without hub or local pretrained weights."""
        return params.model_copy(update={"backbone_pretrained": False,
                                         "backbone_checkpoint": None})

    @classmethod
    def from_lightning_pose(
        cls, params: PerViewCNNParams, state: dict[str, torch.Tensor], context: Context,
    ) -> tuple[PerViewCNNParams, dict[str, torch.Tensor]]:
        """A Lightning Pose per-view CNN's tensors under this class's names
        (``mv_cnn.lightning_pose``)."""
        # lazy: the conversion module is needed only by `mvcore import-lightning-pose`
        from mv_cnn.lightning_pose import convert_lightning_pose

        return convert_lightning_pose(params, state, context)

    def __init__(self, params: PerViewCNNParams, context: Context) -> None:
        super().__init__(params, context)
        self.variant = _check_params(params, context)
        self.downsample_factor = int(context.downsample_factor)
        checkpoint = None
        if params.backbone_checkpoint:
            checkpoint, _ = context.resolve_path(params.backbone_checkpoint)
        # seeded, without disturbing the caller's RNG: the same config builds the same network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(context.seed))
            self.cnn = build_cnn(self.variant, bool(params.backbone_pretrained), checkpoint)
            self.head = CNNHeatmapHead(int(self.cnn.num_features), self.num_keypoints,
                                       self.downsample_factor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, V, 3, H, W) -> heatmaps (B, V, K, H / 2**ds, W / 2**ds)``."""
        if images.ndim != 5 or images.shape[1] != self.num_views:
            raise ValueError(
                f"expected images (B, {self.num_views}, 3, H, W), got {tuple(images.shape)}")
        batch, views = images.shape[:2]
        features = self.cnn.forward_features(images.flatten(0, 1))  # (B*V, C, H/32, W/32)
        logits = self.head(features).float()  # (B*V, K, h, w); softmax in float32
        heatmaps = logits.flatten(-2).softmax(dim=-1).view(logits.shape)
        return heatmaps.view(batch, views, *logits.shape[1:])

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the CNN; frozen until unfreezing) and ``head``."""
        return {"backbone": [p for p in self.cnn.parameters() if p.requires_grad],
                "head": [p for p in self.head.parameters() if p.requires_grad]}


__all__ = [
    "VARIANTS",
    "CNNHeatmapHead",
    "PerViewCNN",
    "PerViewCNNParams",
    "build_cnn",
    "load_cnn_checkpoint",
]
