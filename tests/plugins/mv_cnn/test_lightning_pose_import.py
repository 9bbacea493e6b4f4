"""Lightning Pose per-view CNN checkpoints into mv-cnn (mv_cnn.lightning_pose): LP-shaped
state dicts load strictly and compute LP's heatmaps; what does not fit is one line (the round
trip against Lightning Pose itself: tests/integration/test_import_lightning_pose_cnn.py)."""

from __future__ import annotations

import pytest
import torch
from mv_cnn.lightning_pose import SUPPORTED, convert_lightning_pose
from mv_cnn.model import PerViewCNN, PerViewCNNParams
from torch import nn

from mvcore.context import Context

torchvision = pytest.importorskip("torchvision")


def make_context(keypoints: int = 3, ds: int = 2) -> Context:
    return Context(view_names=("top", "side"), keypoint_names=tuple(f"kp{k}" for k in
                                                                    range(keypoints)),
                   image_height=64, image_width=64, downsample_factor=ds, seed=0)


def lp_network(arch: str = "resnet18", keypoints: int = 3, ds: int = 2) -> nn.Module:
    """Lightning Pose's ``HeatmapTracker`` network as it builds it: torchvision children up
    to layer4 in a Sequential, then PixelShuffle(2) and ``4 - ds`` transposed convolutions."""
    torch.manual_seed(0)
    base = getattr(torchvision.models, arch)(weights=None)
    channels = base.fc.in_features
    layers: list[nn.Module] = [nn.PixelShuffle(2)]
    for index in range(4 - ds):
        layers.append(nn.ConvTranspose2d(channels // 4 if index == 0 else keypoints, keypoints,
                                         3, stride=2, padding=1, output_padding=1))
    network = nn.Module()
    network.backbone = nn.Sequential(*list(base.children())[:-2])
    network.head = nn.Module()
    network.head.upsampling_layers = nn.Sequential(*layers)
    with torch.no_grad():  # non-trivial batch-norm statistics and a peaked head
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
            if isinstance(module, nn.ConvTranspose2d):
                module.weight.mul_(10)
    return network.eval()


def lp_heatmaps(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images (B, V, 3, H, W) -> (B, V*K, h, w)`` as ``HeatmapTracker.forward``."""
    logits = network.head.upsampling_layers(network.backbone(images.flatten(0, 1)))
    maps = logits.flatten(-2).softmax(-1).view(logits.shape)
    return maps.reshape(images.shape[0], -1, *maps.shape[-2:])


def convert(state: dict[str, torch.Tensor], backbone: str = "resnet18",
            context: Context | None = None) -> tuple[PerViewCNNParams, dict]:
    params = PerViewCNNParams(backbone=backbone)
    return convert_lightning_pose(params, state, context or make_context())


@pytest.mark.parametrize(("arch", "ds"), [("resnet18", 2), ("resnet50", 3)])
def test_a_lightning_pose_resnet_loads_strictly_and_computes_its_heatmaps(arch, ds):
    network = lp_network(arch, ds=ds)
    context = make_context(ds=ds)
    params, state = convert(network.state_dict(), arch, context)
    assert (params.backbone, params.backbone_pretrained, params.backbone_checkpoint) == (
        arch, False, None)
    model = PerViewCNN(params, context).eval()
    model.load_state_dict(state, strict=True)
    images = torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(images)  # (B, V, K, h, w)
        theirs = lp_heatmaps(network, images).reshape(ours.shape)
    assert ours.shape == (2, 2, 3, 64 // 2**ds, 64 // 2**ds)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_the_resnet_depth_is_read_from_the_tensors():
    state = lp_network("resnet34").state_dict()
    with pytest.raises(ValueError, match=r"^model.backbone is 'resnet18' \(a resnet18\), the "
                                         r"checkpoint's backbone.\* tensors are a resnet34"):
        convert(state, "resnet18")
    assert convert(state, "resnet34")[0].backbone == "resnet34"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(view_embeddings=torch.zeros(2, 8)),
     r"not a Lightning Pose per-view ResNet checkpoint: unexpected tensors \['view_embeddings'"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("head.")],
     r"not a Lightning Pose per-view ResNet checkpoint: no head.upsampling_layers.\*"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("head.upsampling_layers.2.")],
     r"the head has transposed convolutions \[1\], expected \[1, 2\] for "
     r"data.downsample_factor 2"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("backbone.7.1.")],
     r"backbone.4 ... backbone.7 have \(2, 2, 2, 1\) basic blocks: not a torchvision ResNet"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line(edit, message):
    state = dict(lp_network().state_dict())
    edit(state)
    with pytest.raises(ValueError, match=message) as caught:
        convert(state)
    assert "\n" not in str(caught.value)


def test_wrong_keypoints_and_unsupported_backbones_are_one_line():
    state = lp_network(keypoints=4).state_dict()
    with pytest.raises(ValueError, match=r"^the head predicts 4 keypoints per view, the config "
                                         r"names 3 \(kp0, kp1, kp2\)$"):
        convert(state)
    with pytest.raises(ValueError, match=r"^model.backbone 'efficientnet_b0': importing "
                                         r"Lightning Pose checkpoints of this backbone is not "
                                         r"supported yet \(supported: resnet18, resnet34, "):
        convert(state, "efficientnet_b0")
    assert "efficientnet_b0" not in SUPPORTED and "resnet50_animal_apose" in SUPPORTED
