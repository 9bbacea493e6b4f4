"""Lightning Pose's Hugging Face ViT and DINOv2 tensors under mv-vit's names
(``mv_vit.hf_weights``, ``mv_vit.hf_dino``, ``mv_vit.lightning_pose``): the same features, and
one-line errors for what does not fit.

The end-to-end check against Lightning Pose's own classes is
``tests/integration/test_import_lightning_pose.py``."""

from __future__ import annotations

import functools

import pytest
import torch
from mv_vit.hf_dino import hf_dinov2_to_timm
from mv_vit.hf_weights import hf_vit_to_timm, resample_hf_position_embeddings
from mv_vit.lightning_pose import convert_lightning_pose
from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams
from torch import nn

from mvcore import Context

transformers = pytest.importorskip("transformers")

DIM, DEPTH, HEADS = 64, 2, 4


def hf_vit(image_size: int) -> nn.Module:
    """A small random ``ViTModel`` with the hub's LayerNorm epsilon (1e-12)."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=DIM, num_hidden_layers=DEPTH,
                                    num_attention_heads=HEADS, intermediate_size=4 * DIM,
                                    image_size=image_size, patch_size=16, qkv_bias=True,
                                    layer_norm_eps=1e-12)
    model = transformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # nothing near zero: a swapped tensor must show
        for name, value in model.named_parameters():
            value.normal_(1.0 if name.endswith("norm.weight") or ".layernorm" in name else 0.0,
                          value.shape[-1] ** -0.5 if value.ndim > 1 else 0.1)
    return model


def timm_vit(image_size: int) -> nn.Module:
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=image_size,
                             embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=0,
                             dynamic_img_size=True,
                             norm_layer=functools.partial(nn.LayerNorm, eps=1e-12)).eval()


@pytest.mark.parametrize("size", [64, 96])
def test_converted_vit_computes_the_hugging_face_features(size):
    # stored for 64 px (4x4 patches), run at `size`: at 96 px the position embeddings are
    # resized once by the conversion, by Hugging Face at every forward
    hf, ours = hf_vit(64), timm_vit(size)
    ours.load_state_dict(hf_vit_to_timm(hf.state_dict(), (size // 16, size // 16)), strict=True)
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(images, interpolate_pos_encoding=True).last_hidden_state
        mine = ours.forward_features(images)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_position_embeddings_of_another_grid_are_resized_and_a_non_square_grid_refused():
    position = torch.randn(1, 1 + 14 * 14, 8)
    resized = resample_hf_position_embeddings(position, (16, 16))
    assert resized.shape == (1, 1 + 16 * 16, 8)
    torch.testing.assert_close(resized[:, 0], position[:, 0])  # the class position is kept
    with pytest.raises(ValueError, match="not a square grid"):
        resample_hf_position_embeddings(torch.randn(1, 1 + 15, 8), (4, 4))


def test_unknown_or_missing_tensors_are_named():
    state = hf_vit(64).state_dict()
    with pytest.raises(ValueError, match=r"does not have: \['layers.0.layer_scale"):
        hf_vit_to_timm({**state, "layers.0.layer_scale.lambda1": torch.ones(DIM)})
    del state["layernorm.bias"]
    with pytest.raises(ValueError, match="no layernorm.bias"):
        hf_vit_to_timm(state)


def lightning_pose_state(views: int, keypoints: int) -> dict[str, torch.Tensor]:
    """The network tensors of a Lightning Pose multi-view transformer (ds 2: one deconv)."""
    state = {f"backbone.vision_encoder.{k}": v for k, v in hf_vit(64).state_dict().items()}
    state["view_embeddings"] = torch.randn(views, DIM)
    state["head.upsampling_layers.1.weight"] = torch.randn(DIM // 4, keypoints, 3, 3)
    state["head.upsampling_layers.1.bias"] = torch.randn(keypoints)
    return state


def context(views: int = 2, keypoints: int = 3) -> Context:
    return Context(view_names=tuple(f"v{i}" for i in range(views)),
                   keypoint_names=tuple(f"k{i}" for i in range(keypoints)),
                   image_height=64, image_width=64, downsample_factor=2)


def test_a_lightning_pose_network_loads_strictly_with_the_architecture_it_implies():
    params = MultiviewTransformerParams(backbone="vits_dino")
    new, state = convert_lightning_pose(params, lightning_pose_state(2, 3), context())
    assert (new.embed_dim, new.depth, new.layer_norm_eps) == (DIM, DEPTH, 1e-12)
    assert new.backbone_pretrained is False and new.backbone_checkpoint is None
    model = MultiviewTransformer(new, context())
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.head.layers[1].bias, state["head.layers.1.bias"])


def test_backbones_without_a_conversion_are_named():
    with pytest.raises(ValueError, match="'vits_dinov3'.*not supported yet.*vits_dinov2"):
        convert_lightning_pose(MultiviewTransformerParams(backbone="vits_dinov3"),
                               lightning_pose_state(2, 3), context())


# ---------------------------------------------------------------------------------- DINOv2
#: the stored position grid of the small DINOv2 below (96 px, 16-pixel patches): 6x6, like
#: the hub's 37x37 a grid the model is not run at
DINOV2_STORED = 96
#: width and heads of the small DINOv2: head width 64, as in every Lightning Pose ViT (the
#: conversion reads the width from the tensors and the heads from the width)
DIM2, HEADS2 = 128, 2


def hf_dinov2(image_size: int = DINOV2_STORED) -> nn.Module:
    """A small random ``Dinov2Model`` as Lightning Pose holds one: 16-pixel patches (Lightning
    Pose resizes the hub's 14), LayerNorm eps 1e-6, layer scales far from 1."""
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=DIM2, num_hidden_layers=DEPTH,
                                       num_attention_heads=HEADS2, mlp_ratio=4,
                                       image_size=image_size, patch_size=16, qkv_bias=True,
                                       layer_norm_eps=1e-6, layerscale_value=1.0)
    model = transformers.Dinov2Model(config).eval()
    with torch.no_grad():  # nothing near zero: a swapped tensor must show
        for name, value in model.named_parameters():
            ones = name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight", "lambda1"))
            value.normal_(1.0 if ones else 0.0,
                          value.shape[-1] ** -0.5 if value.ndim > 1 else 0.3)
    return model


def timm_dinov2(image_size: int) -> nn.Module:
    """timm's DINOv2 ViT as mv-vit builds it (``build_vit``): 16-pixel patches, positions for
    ``image_size``, dynamic image size, timm's LayerNorm eps (1e-6, as Hugging Face's)."""
    import timm

    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=image_size,
                             patch_size=16, embed_dim=DIM2, depth=DEPTH, num_heads=HEADS2,
                             num_classes=0, dynamic_img_size=True).eval()


@pytest.mark.parametrize("size", [64, DINOV2_STORED, 128])
def test_converted_dinov2_computes_the_hugging_face_features(size):
    # stored for 96 px (6x6 patches), run at `size`: Hugging Face resizes the positions at
    # every forward, the conversion once; timm, built for `size`, keeps them as loaded
    hf, ours = hf_dinov2(), timm_dinov2(size)
    state = hf_dinov2_to_timm(hf.state_dict())
    grid = (size // 16, size // 16)
    state["pos_embed"] = resample_hf_position_embeddings(state["pos_embed"], grid)
    ours.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(images, interpolate_pos_encoding=True).last_hidden_state
        mine = ours.forward_features(images)
    assert tuple(ours.pos_embed.shape) == (1, 1 + grid[0] * grid[1], DIM2)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_dinov2_positions_resized_as_timm_would_give_other_features():
    # the test above can tell: timm's own resampling (antialiased, as when a checkpoint of
    # another grid is loaded or the input size changes) is not Hugging Face's
    from timm.layers import resample_abs_pos_embed

    hf, ours = hf_dinov2(), timm_dinov2(64)
    state = hf_dinov2_to_timm(hf.state_dict())
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], (4, 4))
    ours.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(images).last_hidden_state
        assert (ours.forward_features(images) - theirs).abs().max() > 1e-2


def lightning_pose_dinov2_state(views: int, keypoints: int) -> dict[str, torch.Tensor]:
    """The network tensors of a Lightning Pose DINOv2 multi-view transformer (ds 2)."""
    state = {f"backbone.vision_encoder.{k}": v for k, v in hf_dinov2().state_dict().items()}
    state["view_embeddings"] = torch.randn(views, DIM2)
    state["head.upsampling_layers.1.weight"] = torch.randn(DIM2 // 4, keypoints, 3, 3)
    state["head.upsampling_layers.1.bias"] = torch.randn(keypoints)
    return state


def lightning_pose_features(hf: nn.Module, view_embeddings: torch.Tensor,
                            images: torch.Tensor) -> torch.Tensor:
    """Lightning Pose's ``forward_vit`` up to the head: ``images (B, V, 3, H, W) ->
    features (B, V*n, D)`` (embeddings with resized positions, class token dropped, view
    embedding added, all views' patches in one sequence, final LayerNorm)."""
    batch = images.shape[0]
    tokens = hf.embeddings(images.flatten(0, 1), bool_masked_pos=None)[:, 1:]  # (B*V, n, D)
    tokens = tokens + view_embeddings.repeat(batch, 1)[:, None, :]
    hidden = hf.encoder(tokens.reshape(batch, -1, tokens.shape[-1])).last_hidden_state
    return hf.layernorm(hidden)


def test_a_lightning_pose_dinov2_network_computes_lightning_pose_features():
    state = lightning_pose_dinov2_state(2, 3)
    params = MultiviewTransformerParams(backbone="vits_dinov2")
    new, converted = convert_lightning_pose(params, state, context())
    assert (new.embed_dim, new.depth, new.num_heads, new.layer_norm_eps) == (DIM2, DEPTH, HEADS2,
                                                                              1e-6)
    assert new.backbone_pretrained is False and new.backbone_checkpoint is None
    model = MultiviewTransformer(new, context()).eval()
    model.load_state_dict(converted, strict=True)  # layer scales included
    images = torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens, grid = model.embed(images)  # (B, V, n, D), stored 6x6 -> 4x4
        mine = model.encode(tokens.flatten(1, 2), grid=grid)
        theirs = lightning_pose_features(hf_dinov2(), state["view_embeddings"], images)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


ENCODER = "backbone.vision_encoder."


@pytest.mark.parametrize(("backbone", "change", "message"), [
    ("vits_dino", lambda s: s.update(extra=torch.zeros(1)), r"unexpected tensors \['extra'\]"),
    ("vits_dino", lambda s: s.pop("view_embeddings"), "no view_embeddings"),
    ("vits_dino", lambda s: s.update(view_embeddings=torch.zeros(3, DIM)),
     r"view_embeddings is \(3, 64\)"),
    ("vits_dino",
     lambda s: s.update({"head.upsampling_layers.1.weight": torch.zeros(DIM // 4, 5, 3, 3)}),
     "the head predicts 5 keypoints per view, the config names 3"),
    ("vits_dinov2",
     lambda s: s.update({ENCODER + "embeddings.register_tokens": torch.zeros(1, 4, DIM2)}),
     "register_tokens: a DINOv2 with registers"),
    ("vits_dinov2",
     lambda s: s.update({ENCODER + "embeddings.patch_embeddings.projection.weight":
                         torch.zeros(DIM2, 3, 14, 14)}),
     "has 14x14 patches, expected 16x16 .*saved by Lightning Pose"),
    ("vits_dinov2",
     lambda s: s.update({ENCODER + "encoder.layer.0.mlp.weights_in.weight": torch.zeros(1)}),
     "not of a Hugging Face Dinov2Model"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_what(backbone, change, message):
    build = {"vits_dino": lightning_pose_state, "vits_dinov2": lightning_pose_dinov2_state}
    state = build[backbone](2, 3)
    change(state)
    with pytest.raises(ValueError, match=message):
        convert_lightning_pose(MultiviewTransformerParams(backbone=backbone), state, context())
