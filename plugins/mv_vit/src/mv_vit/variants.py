"""The ViT variants a ``model.backbone`` name can select, as timm architectures.

Hub variants (DINO, DINOv2, DINOv3, MAE) can load pretrained weights from the Hugging Face hub
through timm; scratch variants are small randomly initialised ViTs for CPU work, tests and the
built-in example. Every variant runs with 16-pixel patches (DINOv2's 14-pixel patch embedding is
resampled to 16 by timm when its weights are loaded). DINOv3 variants are timm ``Eva`` models:
2D rotary position embeddings (RoPE) in every attention block instead of an absolute position
embedding, and four register tokens besides the class token.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from mvcore import ConfigError

#: patch size of every variant; the heatmap head and patch masking rely on it
PATCH_SIZE = 16


@dataclass(frozen=True)
class ViTVariant:
    """One ``model.backbone`` choice.

    ``timm_name`` is the timm architecture, ``pretrained_tag`` the timm weight tag (``None`` for
    scratch variants, which have no pretrained weights). ``rope``: positions enter through
    rotary embeddings in the attention blocks (DINOv3), not an added position embedding.
    """

    name: str
    timm_name: str
    pretrained_tag: str | None
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = PATCH_SIZE
    rope: bool = False

    @property
    def is_scratch(self) -> bool:
        return self.pretrained_tag is None

    @property
    def hub_name(self) -> str:
        """``arch.tag`` as given to ``timm.create_model(..., pretrained=True)``."""
        return f"{self.timm_name}.{self.pretrained_tag}" if self.pretrained_tag else self.timm_name


VARIANTS: dict[str, ViTVariant] = {
    v.name: v
    for v in (
        ViTVariant("vits_dino", "vit_small_patch16_224", "dino", 384, 12, 6),
        ViTVariant("vitb_dino", "vit_base_patch16_224", "dino", 768, 12, 12),
        ViTVariant("vits_dinov2", "vit_small_patch14_dinov2", "lvd142m", 384, 12, 6),
        ViTVariant("vitb_dinov2", "vit_base_patch14_dinov2", "lvd142m", 768, 12, 12),
        ViTVariant("vits_dinov3", "vit_small_patch16_dinov3", "lvd1689m", 384, 12, 6, rope=True),
        ViTVariant("vitb_dinov3", "vit_base_patch16_dinov3", "lvd1689m", 768, 12, 12, rope=True),
        ViTVariant("vitb_imagenet", "vit_base_patch16_224", "mae", 768, 12, 12),
        ViTVariant("vit_tiny_scratch", "vit_tiny_patch16_224", None, 192, 6, 3),
        ViTVariant("vit_micro_scratch", "vit_tiny_patch16_224", None, 64, 2, 2),
    )
}


def get_variant(name: str) -> ViTVariant:
    """The variant called ``name``; an unknown name is a ConfigError with a did-you-mean."""
    try:
        return VARIANTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(VARIANTS), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"model.backbone: unknown backbone {name!r} for the multi-view transformer.{hint} "
            f"Allowed: {', '.join(VARIANTS)}"
        ) from None
