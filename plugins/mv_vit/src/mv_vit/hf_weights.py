"""Hugging Face ``ViTModel`` tensors under timm's names, for ViTs trained elsewhere.

Lightning Pose builds its DINO and MAE backbones with the ``transformers`` ``ViTModel``; mvcore
with timm's ``VisionTransformer``. The two compute the same function (same blocks, same
order), under other names and with q, k, v kept apart where timm fuses them. Both key layouts
of ``transformers`` are read: 4.x (``encoder.layer.N.attention.attention.query``) and 5.x
(``layers.N.attention.q_proj``).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

__all__ = ["hf_vit_depth", "hf_vit_to_timm", "resample_hf_position_embeddings"]

#: per-block tensor names: timm name -> (transformers 4.x name, transformers 5.x name)
_BLOCK_NAMES = {
    "norm1": ("layernorm_before", "layernorm_before"),
    "attn.proj": ("attention.output.dense", "attention.o_proj"),
    "norm2": ("layernorm_after", "layernorm_after"),
    "mlp.fc1": ("intermediate.dense", "mlp.fc1"),
    "mlp.fc2": ("output.dense", "mlp.fc2"),
}
#: the q, k, v projections, fused by timm in this order into ``attn.qkv``
_QKV_NAMES = (("attention.attention.query", "attention.q_proj"),
              ("attention.attention.key", "attention.k_proj"),
              ("attention.attention.value", "attention.v_proj"))
_BLOCK_PREFIXES = ("encoder.layer.", "layers.")
#: HF tensors with no counterpart in mvcore's network (masked-image modelling, pooling)
_UNUSED = re.compile(r"^(embeddings\.mask_token|pooler\..*)$")


def hf_vit_depth(state: dict[str, torch.Tensor]) -> int:
    """The number of transformer blocks in a ``ViTModel`` state dict (either layout)."""
    pattern = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def resample_hf_position_embeddings(position: torch.Tensor, grid: tuple[int, int]
                                    ) -> torch.Tensor:
    """``(1, 1 + g*g, D)`` -> ``(1, 1 + gh*gw, D)``: the class position and the patch positions
    resized to ``grid = (gh, gw)`` exactly as ``ViTEmbeddings.interpolate_pos_encoding`` does
    at run time (bicubic, ``align_corners=False``, no antialiasing), so the converted network
    computes what the Hugging Face one computed on ``grid``-sized inputs.

    ``Dinov2Embeddings.interpolate_pos_encoding`` resizes the same way (read in transformers
    4.57.1 and 5.24.0; Lightning Pose 2.4.3 needs >= 4.57.5): in float32, to ``size=grid``
    (not by a scale factor with a +0.1 offset, as older releases did), no antialiasing; so
    DINOv2's 37x37 grid goes through here too. Both keep the positions when ``grid`` is the
    stored one."""
    cls_pos, patch_pos = position[:, :1], position[:, 1:]
    side = int(round(patch_pos.shape[1] ** 0.5))
    if side * side != patch_pos.shape[1]:
        raise ValueError(f"position embeddings of {patch_pos.shape[1]} patches are not a square "
                         "grid")
    if (side, side) == tuple(grid):
        return position
    dim = patch_pos.shape[-1]
    square = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(square.float(), size=tuple(grid), mode="bicubic",
                            align_corners=False).to(position.dtype)
    return torch.cat([cls_pos, resized.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def hf_vit_to_timm(state: dict[str, torch.Tensor], grid: tuple[int, int] | None = None
                   ) -> dict[str, torch.Tensor]:
    """Rename a ``ViTModel`` state dict (no prefix) to timm ``VisionTransformer`` keys.

    ``grid``: the patch grid the timm model is built for (``(H/16, W/16)``); the position
    embeddings are resampled to it as Hugging Face would at that input size. A tensor this
    function does not know is a ValueError naming the first few, so a model of another family
    (DINOv2's layer scales, SAM) is never half converted."""
    layout = 1 if any(key.startswith("layers.") for key in state) else 0
    prefix = _BLOCK_PREFIXES[layout]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise ValueError(f"not a complete Hugging Face ViTModel state dict: no {name}")
        used.add(name)
        return state[name]

    missing = [k for k in ("embeddings.cls_token", "embeddings.position_embeddings",
                           "embeddings.patch_embeddings.projection.weight") if k not in state]
    if missing:
        raise ValueError(f"not a Hugging Face ViTModel state dict: no {missing[0]}")
    out["cls_token"] = take("embeddings.cls_token")
    position = take("embeddings.position_embeddings")
    out["pos_embed"] = position if grid is None else resample_hf_position_embeddings(position,
                                                                                     grid)
    for part in ("weight", "bias"):
        out[f"patch_embed.proj.{part}"] = take(f"embeddings.patch_embeddings.projection.{part}")
        out[f"norm.{part}"] = take(f"layernorm.{part}")
    for i in range(hf_vit_depth(state)):
        src, dst = f"{prefix}{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            qkv = [take(f"{src}{names[layout]}.{part}") for names in _QKV_NAMES]
            out[f"{dst}attn.qkv.{part}"] = torch.cat(qkv, dim=0)
            for timm_name, names in _BLOCK_NAMES.items():
                out[f"{dst}{timm_name}.{part}"] = take(f"{src}{names[layout]}.{part}")
    unknown = [k for k in state if k not in used and not _UNUSED.match(k)]
    if unknown:
        raise ValueError(f"tensors a ViTModel does not have: {unknown[:3]} (another "
                         "architecture?)")
    return out
