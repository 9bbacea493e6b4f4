"""Lightning Pose's Hugging Face ViT tensors under mv-vit's names (``mv_vit.hf_weights``,
``mv_vit.lightning_pose``): the same features, and one-line errors for what does not fit.

The end-to-end check against Lightning Pose's own classes is
``tests/integration/test_import_lightning_pose.py``."""

from __future__ import annotations

import functools

import pytest
import torch
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


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.update(extra=torch.zeros(1)), r"unexpected tensors \['extra'\]"),
    (lambda s: s.pop("view_embeddings"), "no view_embeddings"),
    (lambda s: s.update(view_embeddings=torch.zeros(3, DIM)), r"view_embeddings is \(3, 64\)"),
    (lambda s: s.update({"head.upsampling_layers.1.weight": torch.zeros(DIM // 4, 5, 3, 3)}),
     "the head predicts 5 keypoints per view, the config names 3"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_what(change, message):
    state = lightning_pose_state(2, 3)
    change(state)
    with pytest.raises(ValueError, match=message):
        convert_lightning_pose(MultiviewTransformerParams(backbone="vits_dino"), state,
                               context())


def test_backbones_without_a_conversion_are_named():
    with pytest.raises(ValueError, match="'vits_dinov2'.*not supported yet.*vits_dino"):
        convert_lightning_pose(MultiviewTransformerParams(backbone="vits_dinov2"),
                               lightning_pose_state(2, 3), context())
