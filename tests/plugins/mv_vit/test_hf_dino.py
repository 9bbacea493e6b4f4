"""Hugging Face DINOv2 / DINOv3 state dicts renamed for timm compute the same features.

Small random ``transformers`` models are converted with ``mv_vit.hf_dino``, loaded strictly
into the matching timm model (built as mv-vit builds it) and both run on the same image at the
checkpoint's own grid (no position interpolation on either side).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
import torch
from mv_vit.hf_dino import hf_dinov2_to_timm, hf_dinov3_to_timm
from torch import nn

transformers = pytest.importorskip("transformers")

SIZE, DIM, DEPTH, HEADS = 64, 32, 2, 2  # a 4x4 grid of 16-pixel patches


def randomize(model: nn.Module, seed: int = 0, skip: tuple[str, ...] = ()) -> nn.Module:
    """Every parameter drawn at random (norms and layer scales around 1), except ``skip``
    suffixes, so that a swapped or dropped tensor shows in the features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name.endswith(skip):
                continue
            noise = torch.randn(value.shape, generator=generator)
            scale = value.shape[-1] ** -0.5 if value.ndim > 1 else 0.1
            is_scale = name.endswith(("lambda1", "norm1.weight", "norm2.weight", "norm.weight"))
            value.copy_((1.0 if is_scale else 0.0) + scale * noise)
    return model.eval()


def image(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def timm_model(name: str, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0, img_size=SIZE,
                             patch_size=16, dynamic_img_size=True, embed_dim=DIM, depth=DEPTH,
                             num_heads=HEADS, **kwargs).eval()


def hf_dinov2(registers: bool = False) -> nn.Module:
    config = dict(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                  mlp_ratio=4, image_size=SIZE, patch_size=16, layer_norm_eps=1e-6)
    if registers:
        return transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **config))
    return transformers.Dinov2Model(transformers.Dinov2Config(**config))


def hf_dinov3(**overrides: Any) -> nn.Module:
    config = dict(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                  intermediate_size=4 * DIM, image_size=SIZE, patch_size=16,
                  num_register_tokens=4, layer_norm_eps=1e-5, rope_theta=100.0)
    return transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(**{**config, **overrides}))


def patch_features(hf: nn.Module, timm_vit: nn.Module, prefix: int) -> tuple[Any, Any]:
    """The final (normed) patch-token features ``(B, n, D)`` of both models on one image."""
    x = image()
    with torch.no_grad():
        ours = timm_vit.forward_features(x)[:, timm_vit.num_prefix_tokens :]
        theirs = hf(pixel_values=x).last_hidden_state[:, prefix:]
    return ours, theirs


def to_transformers_4x_dinov2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformers 4.x names of a 5.x ``Dinov2Model`` state dict (as 4.57 saves them)."""
    renames = {"attention.q_proj": "attention.attention.query",
               "attention.k_proj": "attention.attention.key",
               "attention.v_proj": "attention.attention.value",
               "attention.o_proj": "attention.output.dense"}
    out = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(f".{new}.", f".{old}.")
        out[key] = value
    return out


# ---------------------------------------------------------------------- DINOv2
def test_dinov2_features_equal_timm() -> None:
    hf = randomize(hf_dinov2())
    state = hf.state_dict()
    assert ({"encoder.layer.0.attention.q_proj.weight",  # transformers 5.x
             "encoder.layer.0.attention.attention.query.weight"} & state.keys())  # 4.x
    vit = timm_model("vit_small_patch14_dinov2")
    assert vit.norm.eps == hf.config.layer_norm_eps
    vit.load_state_dict(hf_dinov2_to_timm(state), strict=True)
    ours, theirs = patch_features(hf, vit, prefix=1)
    assert ours.shape == (2, 16, DIM)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_dinov2_transformers_4x_layout_converts_the_same() -> None:
    state = randomize(hf_dinov2()).state_dict()
    old = to_transformers_4x_dinov2(state)
    assert "encoder.layer.1.attention.attention.key.bias" in old
    assert "encoder.layer.1.attention.output.dense.weight" in old
    new, converted = hf_dinov2_to_timm(state), hf_dinov2_to_timm(old)
    assert new.keys() == converted.keys()
    assert all(torch.equal(new[k], converted[k]) for k in new)


def test_dinov2_with_registers_features_equal_timm() -> None:
    hf = randomize(hf_dinov2(registers=True), seed=3)
    vit = timm_model("vit_small_patch14_reg4_dinov2")
    vit.load_state_dict(hf_dinov2_to_timm(hf.state_dict()), strict=True)
    ours, theirs = patch_features(hf, vit, prefix=5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- DINOv3
def test_dinov3_features_equal_timm() -> None:
    # timm's vit_small_patch16_dinov3 has no q/v biases: HF's are zero here (their init)
    hf = randomize(hf_dinov3(), skip=("q_proj.bias", "v_proj.bias"))
    state = hf.state_dict()
    assert {"model.layer.0.attention.q_proj.weight",  # transformers 5.x
            "layer.0.attention.q_proj.weight"} & state.keys()  # 4.x
    vit = timm_model("vit_small_patch16_dinov3")
    assert vit.norm.eps == hf.config.layer_norm_eps
    vit.load_state_dict(hf_dinov3_to_timm(state), strict=True)
    ours, theirs = patch_features(hf, vit, prefix=5)
    assert ours.shape == (2, 16, DIM)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_dinov3_with_qv_biases_equals_timm_qkvb() -> None:
    hf = randomize(hf_dinov3(), seed=2)
    state = hf.state_dict()
    assert all(v.any() for k, v in state.items() if k.endswith("q_proj.bias"))
    with pytest.raises(ValueError, match=r"block 0 has a non-zero q bias.*qkv_bias=True"):
        hf_dinov3_to_timm(state)
    vit = timm_model("vit_small_patch16_dinov3_qkvb")
    vit.load_state_dict(hf_dinov3_to_timm(state, qkv_bias=True), strict=True)
    ours, theirs = patch_features(hf, vit, prefix=5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_dinov3_transformers_4x_layout_and_no_registers() -> None:
    hf = randomize(hf_dinov3(num_register_tokens=0), seed=4,
                   skip=("q_proj.bias", "v_proj.bias"))
    # transformers 4.x has no "model." before "layer.N." (DINOv3ViTModel, 4.56 - 4.57)
    old = {re.sub(r"^model\.", "", k): v for k, v in hf.state_dict().items()}
    old["rope_embeddings.inv_freq"] = torch.ones(4)  # a RoPE buffer, if one was saved
    assert "layer.0.attention.k_proj.weight" in old
    converted = hf_dinov3_to_timm(old)
    assert "reg_token" not in converted
    vit = timm_model("vit_small_patch16_dinov3", num_reg_tokens=0)
    vit.load_state_dict(converted, strict=True)
    ours, theirs = patch_features(hf, vit, prefix=1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- errors
def test_unknown_keys_are_named() -> None:
    state = {f"backbone.{k}": v for k, v in hf_dinov2().state_dict().items()}
    with pytest.raises(ValueError, match=r"not of a Hugging Face Dinov2Model, e\.g\. "
                                         r"\['backbone\.embeddings\.cls_token'"):
        hf_dinov2_to_timm(state)
    gated = hf_dinov3(use_gated_mlp=True).state_dict()
    with pytest.raises(ValueError, match=r"DINOv3ViTModel.*gate_proj.*SwiGLU"):
        hf_dinov3_to_timm(gated)


# ---------------------------------------------------------------------- as a backbone checkpoint
def _mvt_from_checkpoint(backbone: str, path: Any) -> Any:
    from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams

    from mvcore.context import Context

    params = MultiviewTransformerParams(backbone=backbone, embed_dim=DIM, depth=DEPTH,
                                        num_heads=HEADS, backbone_checkpoint=str(path))
    context = Context(view_names=("a", "b"), keypoint_names=("k",), image_height=SIZE,
                      image_width=SIZE, downsample_factor=2)
    MultiviewTransformer.validate_context(params, context)
    return MultiviewTransformer(params, context)


def test_converted_dinov3_loads_as_backbone_checkpoint(tmp_path: Any) -> None:
    """The documented route: convert, save, set as ``backbone_checkpoint``."""
    hf = randomize(hf_dinov3(), skip=("q_proj.bias", "v_proj.bias"))
    state = hf_dinov3_to_timm(hf.state_dict())
    torch.save(state, tmp_path / "dinov3.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing, unexpected or skipped
        model = _mvt_from_checkpoint("vits_dinov3", tmp_path / "dinov3.pth")
    loaded = model.vit.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_converted_patch14_dinov2_is_resampled_into_vits_dinov2(tmp_path: Any) -> None:
    config = transformers.Dinov2Config(hidden_size=DIM, num_hidden_layers=DEPTH,
                                       num_attention_heads=HEADS, image_size=98, patch_size=14)
    state = hf_dinov2_to_timm(transformers.Dinov2Model(config).state_dict())
    assert state["pos_embed"].shape == (1, 1 + 7 * 7, DIM)
    torch.save(state, tmp_path / "dinov2.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _mvt_from_checkpoint("vits_dinov2", tmp_path / "dinov2.pth")
    assert model.vit.patch_embed.proj.weight.shape == (DIM, 3, 16, 16)
    assert model.vit.pos_embed.shape == (1, 1 + 4 * 4, DIM)
    torch.testing.assert_close(model.vit.blocks[1].attn.qkv.weight,
                               state["blocks.1.attn.qkv.weight"])
