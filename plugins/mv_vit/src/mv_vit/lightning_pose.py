"""Lightning Pose multi-view transformer checkpoints as this plugin's ``MultiviewTransformer``.

Lightning Pose's ``HeatmapTrackerMultiviewTransformer`` saves its network as
``backbone.vision_encoder.*`` (a Hugging Face ``ViTModel``, or a ``Dinov2Model`` for
``vits_dinov2`` / ``vitb_dinov2``), ``head.upsampling_layers.*`` (the same PixelShuffle +
transposed-convolution head as ``mv_vit.head``) and ``view_embeddings`` ``(V, D)``; its forward
is this plugin's (patch tokens of all views in one sequence, class token dropped after position
embedding, view embedding added, final LayerNorm). Converting is renaming, fusing q/k/v, and
resizing the position embeddings to the model input once, the way Hugging Face resizes them at
every forward. DINOv2's patch embedding is already 16x16 in the checkpoint: Lightning Pose
resizes the hub's 14x14 one when it builds the model.
"""

from __future__ import annotations

from typing import Any

import torch

from mv_vit.hf_dino import hf_dinov2_to_timm
from mv_vit.hf_weights import hf_vit_to_timm, resample_hf_position_embeddings
from mv_vit.variants import get_variant
from mvcore import Context

__all__ = ["HF_LAYER_NORM_EPS", "convert_lightning_pose"]

_ENCODER = "backbone.vision_encoder."
_HEAD = "head.upsampling_layers."
#: LayerNorm epsilon of the Hugging Face checkpoints Lightning Pose starts its ViTs from
#: (their config.json: 1e-12 for DINO and MAE's ViTModel, 1e-6 for facebook/dinov2-small and
#: -base); timm's ViTs use 1e-6
HF_LAYER_NORM_EPS = {"vits_dino": 1e-12, "vitb_dino": 1e-12, "vitb_imagenet": 1e-12,
                     "vits_dinov2": 1e-6, "vitb_dinov2": 1e-6}
#: the backbones Lightning Pose builds as a Hugging Face ``Dinov2Model``
_DINOV2 = ("vits_dinov2", "vitb_dinov2")
#: the head dimension of every ViT Lightning Pose offers (384 / 6, 768 / 12)
_HEAD_DIM = 64


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                     dict[str, torch.Tensor], torch.Tensor]:
    """``(encoder tensors without prefix, head tensors by layer name, view embeddings)``."""
    encoder = {k.removeprefix(_ENCODER): v for k, v in state.items() if k.startswith(_ENCODER)}
    head = {k.removeprefix(_HEAD): v for k, v in state.items() if k.startswith(_HEAD)}
    known = {_ENCODER + k for k in encoder} | {_HEAD + k for k in head} | {"view_embeddings"}
    unknown = [k for k in state if k not in known]
    if unknown or not encoder or not head or "view_embeddings" not in state:
        what = (f"unexpected tensors {unknown[:3]}" if unknown else
                "no " + ", ".join(name for name, part in (
                    (_ENCODER + "*", encoder), (_HEAD + "*", head),
                    ("view_embeddings", "view_embeddings" in state)) if not part))
        raise ValueError(f"not a Lightning Pose multi-view transformer checkpoint: {what}")
    return encoder, head, state["view_embeddings"]


def _dinov2_to_timm(encoder: dict[str, torch.Tensor], grid: tuple[int, int],
                    patch_size: int) -> dict[str, torch.Tensor]:
    """A Lightning Pose ``Dinov2Model`` state dict (no prefix) under timm's names, its
    ``(1, 1 + 37*37, D)`` position embeddings resized to ``grid`` as ``Dinov2Embeddings``
    resizes them at every forward on ``grid``-sized inputs."""
    vit = hf_dinov2_to_timm(encoder)
    if "reg_token" in vit:
        raise ValueError("backbone.vision_encoder.embeddings.register_tokens: a DINOv2 with "
                         "registers; Lightning Pose's vits_dinov2 / vitb_dinov2 have none")
    missing = [k for k in ("cls_token", "pos_embed", "patch_embed.proj.weight") if k not in vit]
    if missing:
        raise ValueError(f"not a complete Hugging Face Dinov2Model state dict: no {missing[0]}")
    patch = tuple(vit["patch_embed.proj.weight"].shape[-2:])
    if patch != (patch_size, patch_size):
        raise ValueError(
            f"backbone.vision_encoder.embeddings.patch_embeddings.projection.weight has "
            f"{patch[0]}x{patch[1]} patches, expected {patch_size}x{patch_size} (Lightning Pose "
            "resizes DINOv2's 14x14 to 16x16 when it builds the model); was this checkpoint "
            "saved by Lightning Pose?")
    vit["pos_embed"] = resample_hf_position_embeddings(vit["pos_embed"], grid)
    return vit


def convert_lightning_pose(params: Any, state: dict[str, torch.Tensor], context: Context
                           ) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(params, state dict)`` of the ``MultiviewTransformer`` that computes what the
    Lightning Pose network of ``state`` computed on inputs of ``context.image_size``.

    The params keep the backbone name and set the architecture read from the tensors
    (width, depth, head width), Hugging Face's LayerNorm epsilon, and no pretrained weights
    (every weight comes from the checkpoint). DINOv2's layer scales become timm's
    ``ls1/ls2.gamma`` (the ``vit_*_patch14_dinov2`` models have them)."""
    variant = get_variant(params.backbone)
    if params.backbone not in HF_LAYER_NORM_EPS:
        raise ValueError(
            f"model.backbone {params.backbone!r}: importing Lightning Pose checkpoints of this "
            f"backbone is not supported yet (supported: {', '.join(HF_LAYER_NORM_EPS)})")
    encoder, head, view_embeddings = _split(state)
    height, width = context.image_size
    grid = (height // variant.patch_size, width // variant.patch_size)
    if params.backbone in _DINOV2:
        vit = _dinov2_to_timm(encoder, grid, variant.patch_size)
    else:
        vit = hf_vit_to_timm(encoder, grid)
    embed_dim = int(vit["patch_embed.proj.weight"].shape[0])
    if tuple(view_embeddings.shape) != (context.num_views, embed_dim):
        raise ValueError(
            f"view_embeddings is {tuple(view_embeddings.shape)}, expected "
            f"({context.num_views}, {embed_dim}) for the views {list(context.view_names)}")
    layers = sorted({int(k.split(".")[0]) for k in head})
    last = head[f"{layers[-1]}.weight"]
    if last.shape[1] != context.num_keypoints:  # ConvTranspose2d weight: (in, out, kh, kw)
        raise ValueError(
            f"the head predicts {last.shape[1]} keypoints per view, the config names "
            f"{context.num_keypoints} ({', '.join(context.keypoint_names)})")
    update: dict[str, Any] = {
        "backbone_pretrained": False,
        "backbone_checkpoint": None,
        "layer_norm_eps": HF_LAYER_NORM_EPS[params.backbone],
        "embed_dim": embed_dim,
        "depth": len({key.split(".")[1] for key in vit if key.startswith("blocks.")}),
        "num_heads": (variant.num_heads if embed_dim == variant.embed_dim
                      else max(1, embed_dim // _HEAD_DIM)),
    }
    if len(layers) > 1:
        update["deconv_channels"] = int(head[f"{layers[0]}.weight"].shape[1])
    out = {f"vit.{k}": v for k, v in vit.items()}
    out.update({f"head.layers.{k}": v for k, v in head.items()})
    out["view_embeddings"] = view_embeddings
    return params.model_copy(update=update), out
