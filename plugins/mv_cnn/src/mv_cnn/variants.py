"""The CNNs a Lightning Pose ``model.backbone`` name selects, as timm architectures.

Lightning Pose builds its CNN backbones from torchvision and, for the ``resnet50_animal_*``,
``resnet50_human_*`` and ``resnet50_contrastive`` names, downloads other labs' ResNet-50
weights (mmpose, SimCLR) from their URLs at run time. mv-cnn builds the same architectures
with timm and downloads nothing but timm's own ImageNet weights:

- ImageNet names (``resnet18`` ... ``efficientnet_b2``) load timm's weights through its hub
  cache (for the ResNets, torchvision's own weights as timm ships them: the ones Lightning Pose
  uses);
- the other names need a local weights file (``model.backbone_checkpoint``): ``source`` is the
  file Lightning Pose would download. timm's ResNet has torchvision's parameter names, so such a
  file loads after its key prefix (``backbone.``, ``encoder.``) is stripped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from mvcore import ConfigError

#: output stride of every variant (ResNets and EfficientNets end at 1/32 of the input)
STRIDE = 32

_MMPOSE = "https://download.openmmlab.com/mmpose"


@dataclass(frozen=True)
class CNNVariant:
    """One ``model.backbone`` choice.

    ``timm_name``: the timm architecture; ``hub_tag``: timm's pretrained-weight tag (ImageNet
    names), or None for a name whose weights come from a local file only; ``source``: where
    Lightning Pose gets those weights (said in the error when no file is given)."""

    name: str
    timm_name: str
    hub_tag: str | None
    source: str

    @property
    def hub_name(self) -> str:
        """``arch.tag`` as given to ``timm.create_model(..., pretrained=True)``."""
        return f"{self.timm_name}.{self.hub_tag}" if self.hub_tag else self.timm_name

    @property
    def local_weights_only(self) -> bool:
        return self.hub_tag is None


VARIANTS: dict[str, CNNVariant] = {
    v.name: v
    for v in (
        CNNVariant("resnet18", "resnet18", "tv_in1k", "torchvision IMAGENET1K_V1"),
        CNNVariant("resnet34", "resnet34", "tv_in1k", "torchvision IMAGENET1K_V1"),
        CNNVariant("resnet50", "resnet50", "tv2_in1k", "torchvision IMAGENET1K_V2"),
        CNNVariant("resnet101", "resnet101", "tv2_in1k", "torchvision IMAGENET1K_V2"),
        CNNVariant("resnet152", "resnet152", "tv2_in1k", "torchvision IMAGENET1K_V2"),
        CNNVariant("efficientnet_b0", "efficientnet_b0", "ra_in1k", "timm ImageNet-1k"),
        CNNVariant("efficientnet_b1", "efficientnet_b1", "ft_in1k", "timm ImageNet-1k"),
        CNNVariant("efficientnet_b2", "efficientnet_b2", "ra_in1k", "timm ImageNet-1k"),
        CNNVariant("resnet50_animal_apose", "resnet50", None,
                   f"{_MMPOSE}/animal/resnet/res50_animalpose_256x256-e1f30bff_20210426.pth"),
        CNNVariant("resnet50_animal_ap10k", "resnet50", None,
                   f"{_MMPOSE}/animal/resnet/res50_ap10k_256x256-35760eb8_20211029.pth"),
        CNNVariant("resnet50_human_jhmdb", "resnet50", None,
                   f"{_MMPOSE}/top_down/resnet/res50_jhmdb_sub3_256x256-c4ec1a0b_20201122.pth"),
        CNNVariant("resnet50_human_res_rle", "resnet50", None,
                   f"{_MMPOSE}/top_down/deeppose/"
                   "deeppose_res50_mpii_256x256_rle-5f92a619_20220504.pth"),
        CNNVariant("resnet50_human_top_res", "resnet50", None,
                   f"{_MMPOSE}/top_down/resnet/res50_mpii_256x256-418ffc88_20200812.pth"),
        CNNVariant("resnet50_human_hand", "resnet50", None,
                   f"{_MMPOSE}/hand/resnet/res50_onehand10k_256x256-739c8639_20210330.pth"),
        CNNVariant("resnet50_contrastive", "resnet50", None,
                   "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/simclr/"
                   "bolts_simclr_imagenet/simclr_imagenet.ckpt"),
    )
}

#: Lightning Pose's transformer names: mv-cnn says where they belong
_VIT_NAMES = ("vits_dino", "vitb_dino", "vits_dinov2", "vitb_dinov2", "vits_dinov3",
              "vitb_dinov3", "vitl_dinov3", "vitb_imagenet", "vitb_sam")


def get_variant(name: str) -> CNNVariant:
    """The variant called ``name``; an unknown name is a one-line ConfigError (a ViT name says
    which model type takes it; others get a did-you-mean)."""
    try:
        return VARIANTS[name]
    except KeyError:
        pass
    if name in _VIT_NAMES or name.startswith("vit"):
        raise ConfigError(
            f"model.backbone: {name!r} is a vision transformer; model_type: heatmap takes a CNN "
            f"({', '.join(VARIANTS)}); for transformers use model_type: "
            "heatmap_multiview_transformer")
    close = difflib.get_close_matches(name, list(VARIANTS), n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"model.backbone: unknown CNN {name!r} for model_type: heatmap.{hint} "
                      f"Allowed: {', '.join(VARIANTS)}")
