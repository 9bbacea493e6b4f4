"""Lightning Pose per-view CNN checkpoints (``model_type: heatmap``) as this plugin's
``PerViewCNN``.

Lightning Pose's ``HeatmapTracker`` keeps a torchvision ResNet's children up to ``layer4`` in
an ``nn.Sequential``, so its checkpoint names them by position: ``backbone.0`` (conv1),
``backbone.1`` (bn1), ``backbone.4`` ... ``backbone.7`` (layer1 ... layer4; 2 and 3 are the
ReLU and max-pool, which have no tensors). Its head is ``head.upsampling_layers.*``
(PixelShuffle, then ``4 - downsample_factor`` transposed convolutions, C/4 -> K -> K), the
head of ``mv_cnn.model.CNNHeatmapHead``. timm's ResNet has torchvision's module names, and
multi-view batches are stacked view-major per sample in both, so converting is renaming.
"""

from __future__ import annotations

from typing import Any

import torch

from mv_cnn.variants import VARIANTS
from mvcore import Context

__all__ = ["SUPPORTED", "convert_lightning_pose"]

_BACKBONE = "backbone."
_HEAD = "head.upsampling_layers."
#: position of a torchvision ResNet's child in Lightning Pose's ``nn.Sequential`` -> its name
_RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                    "7": "layer4"}
#: ``(blocks per stage, bottleneck blocks)`` of each torchvision ResNet depth
_RESNET_DEPTHS = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34",
                  (3, 4, 6, 3, True): "resnet50", (3, 4, 23, 3, True): "resnet101",
                  (3, 8, 36, 3, True): "resnet152"}
#: the Lightning Pose backbone names this conversion takes (every torchvision ResNet)
SUPPORTED = tuple(name for name, v in VARIANTS.items() if v.timm_name.startswith("resnet"))


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                     dict[str, torch.Tensor]]:
    """``(backbone tensors under timm's ResNet names, head tensors by layer name)``."""
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(_HEAD):
            head[key.removeprefix(_HEAD)] = value
            continue
        index, _, rest = key.removeprefix(_BACKBONE).partition(".")
        if key.startswith(_BACKBONE) and index in _RESNET_CHILDREN and rest:
            backbone[f"{_RESNET_CHILDREN[index]}.{rest}"] = value
        else:
            unknown.append(key)
    if unknown or not backbone or not head:
        what = (f"unexpected tensors {unknown[:3]}" if unknown else
                "no " + ", ".join(name for name, part in (
                    (_BACKBONE + "0.weight ...", backbone), (_HEAD + "*", head)) if not part))
        raise ValueError(f"not a Lightning Pose per-view ResNet checkpoint: {what}")
    return backbone, head


def _resnet_name(backbone: dict[str, torch.Tensor]) -> str:
    """The torchvision ResNet whose stage depths and block type the tensors have."""
    blocks = tuple(len({k.split(".")[1] for k in backbone if k.startswith(f"layer{i}.")})
                   for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in backbone
    name = _RESNET_DEPTHS.get((*blocks, bottleneck))
    if name is None:
        raise ValueError(f"backbone.4 ... backbone.7 have {blocks} "
                         f"{'bottleneck' if bottleneck else 'basic'} blocks: not a torchvision "
                         f"ResNet ({', '.join(sorted(set(_RESNET_DEPTHS.values())))})")
    return name


def convert_lightning_pose(params: Any, state: dict[str, torch.Tensor], context: Context
                           ) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(params, state dict)`` of the ``PerViewCNN`` that computes what the Lightning Pose
    per-view network of ``state`` computed.

    The params keep the backbone name (checked against the tensors' ResNet depth) and take no
    pretrained weights: every weight comes from the checkpoint."""
    if params.backbone not in SUPPORTED:
        raise ValueError(
            f"model.backbone {params.backbone!r}: importing Lightning Pose checkpoints of this "
            f"backbone is not supported yet (supported: {', '.join(SUPPORTED)})")
    backbone, head = _split(state)
    depth = _resnet_name(backbone)
    expected = VARIANTS[params.backbone].timm_name
    if depth != expected:
        raise ValueError(f"model.backbone is {params.backbone!r} (a {expected}), the "
                         f"checkpoint's backbone.* tensors are a {depth}; fix model.backbone")
    layers = sorted({int(k.split(".")[0]) for k in head})
    wanted = list(range(1, 5 - int(context.downsample_factor)))
    if layers != wanted:
        raise ValueError(
            f"the head has transposed convolutions {layers}, expected {wanted} for "
            f"data.downsample_factor {context.downsample_factor}")
    last_conv = "conv3" if "layer4.0.conv3.weight" in backbone else "conv2"
    channels = int(backbone[f"layer4.0.{last_conv}.weight"].shape[0])  # the CNN's features
    first, last = head[f"{layers[0]}.weight"], head[f"{layers[-1]}.weight"]
    if first.shape[0] * 4 != channels:  # ConvTranspose2d weight: (in, out, kh, kw)
        raise ValueError(f"head.upsampling_layers.{layers[0]}.weight takes {first.shape[0]} "
                         f"channels, expected {channels // 4} ({depth}'s {channels} / 4)")
    if last.shape[1] != context.num_keypoints:
        raise ValueError(
            f"the head predicts {last.shape[1]} keypoints per view, the config names "
            f"{context.num_keypoints} ({', '.join(context.keypoint_names)})")
    update = {"backbone_pretrained": False, "backbone_checkpoint": None}
    out = {f"cnn.{k}": v for k, v in backbone.items()}
    out.update({f"head.layers.{k}": v for k, v in head.items()})
    return params.model_copy(update=update), out
