"""Hugging Face DINOv2 / DINOv3 tensors under timm's names.

Lightning Pose loads DINOv2 and DINOv3 from the Hugging Face hub with ``transformers``
(``Dinov2Model``, ``DINOv3ViTModel``); mvcore builds the same networks with timm
(``vit_*_patch14_dinov2``, built with 16-pixel patches, and ``vit_*_patch16_dinov3``). The two
compute the same function under other names; timm fuses q, k, v into one ``attn.qkv``. These
pure functions rename a state dict (keys without any prefix, as the model's own
``state_dict()`` gives them) and read both key layouts of ``transformers``:

- DINOv2, 4.x: ``encoder.layer.N.attention.attention.query``, ``attention.output.dense``;
  5.x: ``encoder.layer.N.attention.q_proj``, ``attention.o_proj``.
- DINOv3, 4.x: ``layer.N.attention.q_proj``; 5.x: ``model.layer.N.attention.q_proj``.

Shapes are kept: a patch-14 DINOv2 checkpoint stays patch 14 with its 37x37 position grid;
timm's checkpoint filter resamples both when the tensors are loaded into mvcore's patch-16
model (``mv_vit.model.load_vit_checkpoint``). Mask tokens (pretraining only) are dropped, and
so are RoPE buffers, which timm computes itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

__all__ = ["hf_dinov2_to_timm", "hf_dinov3_to_timm"]

Tensor = torch.Tensor

#: DINOv2 per-block tensors: HF name after ``encoder.layer.N.`` -> timm name after ``blocks.N.``
_DINOV2_BLOCK = {
    **{f"{hf}.{p}": f"{timm}.{p}" for p in ("weight", "bias") for hf, timm in (
        ("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
        ("attention.output.dense", "attn.proj"),  # transformers 4.x
        ("attention.o_proj", "attn.proj"),  # transformers 5.x
    )},
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}
#: DINOv2 q, k, v projections (4.x and 5.x names) -> their part of timm's fused ``attn.qkv``
_DINOV2_QKV = {"attention.attention.query": "q", "attention.attention.key": "k",
               "attention.attention.value": "v",
               "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v"}
_DINOV2_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}

#: DINOv3 per-block tensors: HF name after ``[model.]layer.N.`` -> timm Eva name
_DINOV3_BLOCK = {
    **{f"{hf}.{p}": f"{timm}.{p}" for p in ("weight", "bias") for hf, timm in (
        ("norm1", "norm1"), ("norm2", "norm2"), ("attention.o_proj", "attn.proj"),
        ("mlp.up_proj", "mlp.fc1"), ("mlp.down_proj", "mlp.fc2"),
    )},
    "layer_scale1.lambda1": "gamma_1",
    "layer_scale2.lambda1": "gamma_2",
}
_DINOV3_QKV = {"attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v"}
_DINOV3_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}


def _rename(
    state: dict[str, Tensor],
    model: str,
    top: dict[str, str],
    block_pattern: re.Pattern[str],
    block: dict[str, str],
    qkv: dict[str, str],
    dropped: Callable[[str], bool],
) -> tuple[dict[str, Tensor], dict[int, dict[str, Tensor]]]:
    """Renamed tensors and, per block index, the q/k/v parts (``"q.weight"``, ``"v.bias"``...)
    left to fuse. Keys that are neither known nor ``dropped`` are a ValueError naming them."""
    out: dict[str, Tensor] = {}
    parts: dict[int, dict[str, Tensor]] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        if dropped(key):
            continue
        match = block_pattern.match(key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            if rest in block:
                out[f"blocks.{index}.{block[rest]}"] = value
                continue
            module, _, param = rest.rpartition(".")
            if module in qkv and param in ("weight", "bias"):
                parts.setdefault(index, {})[f"{qkv[module]}.{param}"] = value
                continue
        unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} tensor(s) are not of a Hugging Face {model}, e.g. {unknown[:4]}; "
            "pass that model's own state_dict() (keys without a prefix such as 'backbone.'; "
            "gated-MLP / SwiGLU models are not supported)")
    return out, parts


def _fused_weight(index: int, part: dict[str, Tensor], model: str) -> Tensor:
    """timm's ``attn.qkv.weight`` ``(3*D, D)``: q, k, v stacked in that order."""
    missing = [name for name in ("q", "k", "v") if f"{name}.weight" not in part]
    if missing:
        raise ValueError(f"{model} block {index} has no {'/'.join(missing)} projection weight; "
                         "is the state dict complete?")
    return torch.cat([part["q.weight"], part["k.weight"], part["v.weight"]], dim=0)


def hf_dinov2_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``Dinov2Model`` state dict -> timm ``vit_*_patch14_dinov2``'s.

    q, k, v (weights and biases) are fused into ``blocks.N.attn.qkv``; layer scales become
    ``ls1/ls2.gamma``; the mask token is dropped. ``Dinov2WithRegistersModel`` tensors map
    onto timm's ``vit_*_patch14_reg4_dinov2`` (``no_embed_class``): the class token's position
    embedding is added into the class token, which HF adds at run time, and ``pos_embed``
    keeps the patch positions only. Both ``transformers`` 4.x and 5.x layouts are read."""
    out, parts = _rename(
        state, "Dinov2Model", _DINOV2_TOP, re.compile(r"^encoder\.layer\.(\d+)\.(.+)$"),
        _DINOV2_BLOCK, _DINOV2_QKV, lambda key: key == "embeddings.mask_token")
    for index, part in sorted(parts.items()):
        out[f"blocks.{index}.attn.qkv.weight"] = _fused_weight(index, part, "Dinov2Model")
        biases = [part.get(f"{name}.bias") for name in ("q", "k", "v")]
        if any(b is not None for b in biases):
            if any(b is None for b in biases):
                raise ValueError(f"Dinov2Model block {index} has biases for only some of q, k, "
                                 "v; timm's DINOv2 needs all three or none")
            out[f"blocks.{index}.attn.qkv.bias"] = torch.cat(biases, dim=0)
    if "reg_token" in out and "pos_embed" in out and "cls_token" in out:
        position = out["pos_embed"]  # (1, 1 + n, D): class position first
        out["cls_token"] = out["cls_token"] + position[:, :1]
        out["pos_embed"] = position[:, 1:]
    return out


def hf_dinov3_to_timm(state: dict[str, Tensor], *, qkv_bias: bool = False) -> dict[str, Tensor]:
    """A Hugging Face ``DINOv3ViTModel`` state dict -> timm ``vit_*_patch16_dinov3``'s (Eva).

    q, k, v weights are fused into ``blocks.N.attn.qkv.weight``; layer scales become
    ``gamma_1/gamma_2``; register tokens ``reg_token`` (dropped when there are none); the
    mask token and RoPE buffers (``rope_embeddings.*``; timm computes its own) are dropped.

    Biases: timm's Eva has no k bias (fixed at zero), and ``vit_*_patch16_dinov3`` none at
    all, so q/v biases (HF ``query_bias``/``value_bias``) must be zero there and are dropped.
    With ``qkv_bias=True`` they become ``q_bias``/``v_bias`` for timm's
    ``vit_*_patch16_dinov3_qkvb``. A non-zero bias that cannot be kept is a ValueError."""
    out, parts = _rename(
        state, "DINOv3ViTModel", _DINOV3_TOP, re.compile(r"^(?:model\.)?layer\.(\d+)\.(.+)$"),
        _DINOV3_BLOCK, _DINOV3_QKV,
        lambda key: key == "embeddings.mask_token" or key.startswith("rope_embeddings."))
    if "reg_token" in out and out["reg_token"].shape[1] == 0:
        del out["reg_token"]  # num_register_tokens: 0; timm's model then has no reg_token
    for index, part in sorted(parts.items()):
        out[f"blocks.{index}.attn.qkv.weight"] = _fused_weight(index, part, "DINOv3ViTModel")
        key_bias = part.get("k.bias")
        if key_bias is not None and key_bias.any():
            raise ValueError(f"DINOv3ViTModel block {index} has a non-zero key bias; timm's "
                             "DINOv3 keeps the key bias at zero and cannot hold it")
        for name in ("q", "v"):
            bias = part.get(f"{name}.bias")
            if qkv_bias:
                if bias is None:
                    bias = torch.zeros_like(part[f"{name}.weight"][:, 0])
                out[f"blocks.{index}.attn.{name}_bias"] = bias
            elif bias is not None and bias.any():
                raise ValueError(
                    f"DINOv3ViTModel block {index} has a non-zero {name} bias, which timm's "
                    "vit_*_patch16_dinov3 has no place for; convert with qkv_bias=True for "
                    "timm's vit_*_patch16_dinov3_qkvb")
    return out
