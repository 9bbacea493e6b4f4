"""The DINOv3 variants of the multi-view transformer (timm ``Eva``: RoPE, registers).

Tiny architectures (``embed_dim``/``depth``/``num_heads`` overrides, no pretrained weights) keep
these fast; the per-view RoPE positions are checked against timm's own single-image forward.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams, load_vit_checkpoint
from mv_vit.variants import VARIANTS
from torch import nn

from mvcore.context import Context
from mvcore.errors import ParamError

SIZE = 64  # 4x4 patch grid


def make_context(views: int = 3, size: int = SIZE, seed: int = 0) -> Context:
    """A project with ``views`` square views of side ``size`` and 3 keypoints."""
    return Context(
        view_names=tuple(f"cam{i}" for i in range(views)),
        keypoint_names=("a", "b", "c"),
        image_height=size,
        image_width=size,
        downsample_factor=2,
        seed=seed,
    )


def tiny(backbone: str = "vits_dinov3", **fields: Any) -> MultiviewTransformerParams:
    """A 2-block, 32-wide DINOv3 MVT without pretrained weights."""
    values: dict[str, Any] = {"embed_dim": 32, "depth": 2, "num_heads": 2,
                              "backbone_pretrained": False}
    return MultiviewTransformerParams(backbone=backbone, **{**values, **fields})


def build(params: MultiviewTransformerParams | None = None,
          context: Context | None = None) -> MultiviewTransformer:
    """Check the params against the project, then build, as the core does.

    The layer scales (timm initialises them at 1e-5, which leaves the blocks all but idle) are
    drawn around 1, as in a trained DINOv3, so attention and RoPE shape the features."""
    params = tiny() if params is None else params
    context = make_context() if context is None else context
    MultiviewTransformer.validate_context(params, context)
    model = MultiviewTransformer(params, context)
    generator = torch.Generator().manual_seed(context.seed)
    with torch.no_grad():
        for name, value in model.vit.named_parameters():
            if name.endswith(("gamma_1", "gamma_2")):
                value.copy_(0.5 + torch.rand(value.shape, generator=generator))
    return model


def images(batch: int = 2, views: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, size, size, generator=generator)


def timm_single_image_reference(model: MultiviewTransformer) -> nn.Module:
    """timm's own DINOv3 model with ``model``'s weights but no class or register tokens.

    Its ``forward_features`` on one image is the single-image forward of that image's patch
    tokens: timm applies its RoPE to all tokens (no prefix) by itself."""
    import timm

    vit = model.vit
    reference = timm.create_model(
        model.variant.timm_name, pretrained=False, num_classes=0, img_size=SIZE,
        embed_dim=vit.embed_dim, depth=len(vit.blocks), num_heads=vit.blocks[0].attn.num_heads,
        class_token=False, num_reg_tokens=0,
    ).eval()
    assert reference.num_prefix_tokens == 0
    state = {k: v for k, v in vit.state_dict().items() if k not in ("cls_token", "reg_token")}
    reference.load_state_dict(state, strict=True)
    return reference


# ---------------------------------------------------------------------- variants
@pytest.mark.parametrize("name", ["vits_dinov3", "vitb_dinov3"])
def test_variants_are_timm_dinov3_models(name: str) -> None:
    import timm

    variant = VARIANTS[name]
    assert variant.hub_name == f"{variant.timm_name}.lvd1689m" and variant.rope
    with torch.device("meta"):  # the architecture's own numbers, no memory for weights
        vit = timm.create_model(variant.timm_name, pretrained=False)
    assert (vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads) == (
        variant.embed_dim, variant.depth, variant.num_heads)
    assert vit.patch_embed.patch_size == (16, 16) and vit.pos_embed is None
    assert vit.num_prefix_tokens == 5  # class + 4 registers


def test_full_size_vits_dinov3_builds_offline() -> None:
    model = build(MultiviewTransformerParams(backbone="vits_dinov3", backbone_pretrained=False))
    assert model.vit.embed_dim == 384 and len(model.vit.blocks) == 12
    assert all(block.attn.num_prefix_tokens == 0 for block in model.vit.blocks)
    assert not model.vit.cls_token.requires_grad and not model.vit.reg_token.requires_grad


# ---------------------------------------------------------------------- shapes and gradients
def test_output_shapes_and_softmax() -> None:
    model = build().eval()
    x = images()
    with torch.no_grad():
        tokens, grid = model.embed(x)
        heat = model(x)
    assert grid == (4, 4) and tokens.shape == (2, 3, 16, 32)
    assert heat.shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(2, 3, 3))


def test_gradients_reach_view_embeddings_and_blocks() -> None:
    model = build().train()
    model(images()).square().sum().backward()
    assert model.view_embeddings.grad is not None
    assert (model.view_embeddings.grad.abs().sum(dim=1) > 0).all()  # every view's
    assert model.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.vit.blocks[0].gamma_1.grad.abs().sum() > 0
    assert model.vit.cls_token.grad is None and model.vit.reg_token.grad is None
    # no trainable parameter is left without a gradient (DDP needs none unused)
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


# ---------------------------------------------------------------------- RoPE per view
def test_rope_positions_repeat_per_view() -> None:
    model = build()
    rope = model.rotary_embedding((4, 4), 3 * 16)
    assert rope.shape == (48, 2 * 16)  # (V*n, 2*head_dim)
    one_view = model.vit.rope.get_embed(shape=[4, 4])
    for view in range(3):
        assert torch.equal(rope[view * 16 : (view + 1) * 16], one_view)
    with pytest.raises(ValueError, match="whole number of 4x4 patch grids"):
        model.rotary_embedding((4, 4), 20)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_blocked_views_equal_timm_single_image_forward(attention: str) -> None:
    """With cross-view attention blocked every view is encoded exactly as timm encodes that
    image alone (its patch tokens, its own RoPE positions): the positions are per view."""
    model = build(tiny(attention=attention)).eval()
    reference = timm_single_image_reference(model)
    with torch.no_grad():
        model.view_embeddings.zero_()  # timm's forward has no view embedding
        x = images()
        tokens, grid = model.embed(x)
        batch, views, n, dim = tokens.shape
        mask = model.cross_view_block_mask(views, n, x.device)
        features = model.encode(tokens.flatten(1, 2), attn_mask=mask, grid=grid)
        features = features.view(batch, views, n, dim)
        for view in range(views):
            expected = reference.forward_features(x[:, view])  # (B, n, D)
            torch.testing.assert_close(features[:, view], expected, rtol=1e-5, atol=1e-5)
        # without the mask the views attend to each other, so the features differ
        joint = model.encode(tokens.flatten(1, 2), grid=grid).view(batch, views, n, dim)
    assert (joint - features).abs().max() > 1e-3


def test_views_interact_without_the_mask_and_not_with_it() -> None:
    model = build().eval()
    x = images()
    x_changed = x.clone()
    x_changed[:, 2] = images(seed=1)[:, 2]

    def view0(x: torch.Tensor, blocked: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """View 0's features ``(B, n, D)`` and heatmaps ``(B, K, h, w)``."""
        tokens, grid = model.embed(x)
        _, views, n, _ = tokens.shape
        mask = model.cross_view_block_mask(views, n, x.device) if blocked else None
        features = model.encode(tokens.flatten(1, 2), attn_mask=mask, grid=grid)[:, :n]
        return features, model(x, block_cross_view_attention=blocked)[:, 0]

    with torch.no_grad():
        (joint, joint_heat), (changed, changed_heat) = view0(x, False), view0(x_changed, False)
        (blocked, blocked_heat), (blocked_changed, blocked_changed_heat) = (
            view0(x, True), view0(x_changed, True))
    assert (changed - joint).abs().max() > 1e-3  # view 0's features move with view 2's pixels
    assert (changed_heat - joint_heat).abs().max() > 1e-8
    torch.testing.assert_close(blocked_changed, blocked, rtol=0, atol=1e-6)
    torch.testing.assert_close(blocked_changed_heat, blocked_heat, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------- options
def test_grad_checkpointing_computes_the_same_values_and_gradients() -> None:
    plain, checkpointed = build().train(), build(tiny(grad_checkpointing=True)).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = images()
    outputs = []
    for model in (plain, checkpointed):
        out = model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(plain.vit.blocks[0].attn.qkv.weight.grad,
                               checkpointed.vit.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(plain.view_embeddings.grad, checkpointed.view_embeddings.grad)


def test_sdpa_and_math_attention_agree() -> None:
    sdpa, math = build().eval(), build(tiny(attention="math")).eval()
    assert not any(block.attn.fused_attn for block in math.vit.blocks)
    with torch.no_grad():
        for block_views in (False, True):
            torch.testing.assert_close(math(images(), block_views), sdpa(images(), block_views),
                                       rtol=1e-4, atol=1e-6)


def test_autocast_bf16_runs_the_blocks_in_bf16() -> None:
    reference = build().eval()
    model = build(tiny(autocast="bf16")).eval()
    model.load_state_dict(reference.state_dict())
    seen: list[torch.dtype] = []
    model.vit.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        out, expected = model(images()), reference(images())
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0.05, atol=1e-3)


def test_compile_blocks_keeps_checkpoint_keys() -> None:
    compiled = build(tiny(compile="blocks"))
    assert compiled.state_dict().keys() == build().state_dict().keys()
    assert all(block._compiled_call_impl is not None for block in compiled.vit.blocks)


def test_head_dim_not_divisible_by_4_is_a_param_error() -> None:
    with pytest.raises(ParamError, match="num_heads.*divisible by 4"):
        build(tiny(embed_dim=24, num_heads=4))  # head_dim 6


# ---------------------------------------------------------------------- weights
def test_state_dict_round_trip() -> None:
    source = build().eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    target = build(context=make_context(seed=1)).eval()
    assert not torch.equal(target.vit.blocks[0].attn.qkv.weight,
                           source.vit.blocks[0].attn.qkv.weight)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(target(images()), source(images()))


def test_local_checkpoint_loads_through_timms_eva_filter(tmp_path: Any) -> None:
    source = build()
    torch.save(source.vit.state_dict(), tmp_path / "dinov3.pth")
    target = build(context=make_context(seed=1))
    report = load_vit_checkpoint(target.vit, tmp_path / "dinov3.pth")
    assert report == {"loaded": len(source.vit.state_dict()), "missing": 0, "unexpected": 0,
                      "shape_mismatch": 0}
    assert torch.equal(target.vit.blocks[1].gamma_2, source.vit.blocks[1].gamma_2)
