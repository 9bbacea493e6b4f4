"""Tests of the per-view CNN backbone (mv_cnn.model, mv_cnn.variants, mv_cnn.plugin)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import timm
import torch
import yaml
from mv_cnn import model as cnn_model
from mv_cnn.model import CNNHeatmapHead, PerViewCNN, PerViewCNNParams
from mv_cnn.variants import VARIANTS, get_variant
from pydantic import ValidationError

from mvcore.build import make_context as run_context
from mvcore.build import select_backbone
from mvcore.config.load import parse_config
from mvcore.context import Context
from mvcore.errors import ConfigError, ParamError
from mvcore.plugin.components import load_components
from mvcore.testing import check_backbone

#: Lightning Pose's CNN backbone names (its config_default_multiview.yaml and ALLOWED_BACKBONES)
LP_CNN_NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_contrastive",
    "resnet50_animal_apose", "resnet50_animal_ap10k", "resnet50_human_jhmdb",
    "resnet50_human_res_rle", "resnet50_human_top_res", "resnet50_human_hand",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
]


def make_context(views: int = 2, ds: int = 2, height: int = 64, width: int = 64,
                 keypoints: int = 3, seed: int = 0, base_dir: str | None = None) -> Context:
    return Context(view_names=tuple(f"cam{i}" for i in range(views)),
                   keypoint_names=tuple(f"kp{k}" for k in range(keypoints)),
                   image_height=height, image_width=width, downsample_factor=ds, seed=seed,
                   base_dir=base_dir)


def build(context: Context | None = None, **fields: Any) -> PerViewCNN:
    """Check the params against the project, then build, as the core does."""
    params = PerViewCNNParams(**{"backbone": "resnet18", "backbone_pretrained": False,
                                 **fields})
    context = context or make_context()
    PerViewCNN.validate_context(params, context)
    return PerViewCNN(params, context)


def lp_select(text: str, config_dir: str | None = None, project: bool = True) -> Any:
    """The backbone a Lightning Pose style config selects (``model`` keys as LP writes them);
    ``project``: checked against a project of the config's views (``config check``), else
    not (``config check --no-data``)."""
    config = parse_config(yaml.safe_load(text))
    config.config_dir = config_dir
    context = None
    if project:
        project = SimpleNamespace(view_names=list(config.data.view_names),
                                  keypoint_names=["a", "b", "c"], has_calibration=False)
        context = run_context(config, project)
    return select_backbone(config, load_components(), context)


LP_CONFIG = """
data: {image_resize_dims: {height: 64, width: 64}, view_names: [top, bot],
       csv_file: [top.csv, bot.csv]}
model:
  model_type: heatmap
  backbone: %s
"""


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0"])
def test_contract(backbone):
    check_backbone(PerViewCNN, {"backbone": backbone, "backbone_pretrained": False})


@pytest.mark.parametrize(("ds", "height", "width"), [(1, 64, 64), (2, 64, 96), (3, 96, 64)])
def test_heatmaps_are_the_image_over_2_to_the_downsample_factor(ds, height, width):
    net = build(make_context(views=3, ds=ds, height=height, width=width, keypoints=4))
    out = net(torch.randn(2, 3, 3, height, width))
    assert out.shape == (2, 3, 4, height // 2**ds, width // 2**ds)
    assert torch.allclose(out.flatten(-2).sum(-1), torch.ones(2, 3, 4), atol=1e-5)
    assert net.head.layers[0].__class__ is torch.nn.PixelShuffle
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.head.layers) == 4 - ds


def test_one_cnn_with_shared_weights_sees_each_view_on_its_own():
    net = build(make_context(views=3)).eval()
    images = torch.randn(2, 3, 3, 64, 64)
    out = net(images)
    # a view's heatmaps depend on that view's image only, through the same weights
    assert torch.allclose(net(images[:, [2, 0, 1]]), out[:, [2, 0, 1]], atol=1e-6)
    same = images[:, [0, 0, 0]]
    heatmaps = net(same)
    assert torch.allclose(heatmaps[:, 1], heatmaps[:, 0], atol=1e-6)
    assert torch.allclose(heatmaps[:, 0], out[:, 0], atol=1e-6)
    assert not any("view" in name for name, _ in net.named_parameters())


def test_the_same_seed_builds_the_same_network_without_touching_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build(make_context(seed=5))
    after = torch.rand(1)
    b = build(make_context(seed=5))
    c = build(make_context(seed=6))
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    assert not torch.equal(a.head.layers[1].weight, c.head.layers[1].weight)


def test_param_groups_split_the_cnn_from_the_head():
    net = build()
    groups = net.param_groups()
    assert list(groups) == ["backbone", "head"]
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in net.cnn.parameters()}
    assert {id(p) for p in groups["head"]} == {id(p) for p in net.head.parameters()}


def test_head_is_lightning_poses():
    head = CNNHeatmapHead(512, 5, downsample_factor=2)
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["PixelShuffle", "ConvTranspose2d", "ConvTranspose2d"]
    assert head.layers[1].in_channels == 128 and head.layers[1].out_channels == 5
    assert head.layers[2].in_channels == 5 and not head.layers[1].bias.any()
    assert head(torch.randn(1, 512, 2, 2)).shape == (1, 5, 16, 16)


# ----------------------------------------------------------------------------- LP names
def test_every_lightning_pose_cnn_name_maps_to_a_timm_architecture():
    assert sorted(VARIANTS) == sorted(LP_CNN_NAMES)
    architectures = set(timm.list_models())
    for name in LP_CNN_NAMES:
        variant = get_variant(name)
        assert variant.timm_name in architectures, name
        if variant.local_weights_only:
            assert variant.timm_name == "resnet50" and variant.source.startswith("https://")
        else:
            assert variant.hub_name in timm.list_pretrained(variant.timm_name), name
    # the ResNets' ImageNet weights are torchvision's, as Lightning Pose uses
    assert get_variant("resnet50").hub_name == "resnet50.tv2_in1k"
    assert get_variant("resnet18").hub_name == "resnet18.tv_in1k"


def test_lightning_pose_keys_select_and_configure_the_cnn():
    selected = lp_select(LP_CONFIG % "resnet34" + "  backbone_pretrained: false\n")
    assert selected.name == "heatmap" and selected.cls is PerViewCNN
    assert selected.params.backbone == "resnet34" and not selected.params.backbone_pretrained
    assert selected.origin["backbone"] == "model.backbone"


@pytest.mark.parametrize(("name", "expected"), [
    ("vits_dino", "model.backbone: 'vits_dino' is a vision transformer; model_type: heatmap "
                  "takes a CNN"),
    ("resnet50_contrast", "model.backbone: unknown CNN 'resnet50_contrast' for model_type: "
                          "heatmap. Did you mean 'resnet50_contrastive'"),
])
def test_a_wrong_backbone_name_is_one_line(name, expected):
    with pytest.raises(ConfigError) as info:
        lp_select(LP_CONFIG % name)
    assert len(str(info.value).splitlines()) == 1
    assert str(info.value).startswith(expected)
    with pytest.raises(ValidationError):
        PerViewCNNParams(backbone=name)


def test_the_image_size_must_be_a_multiple_of_the_stride():
    with pytest.raises(ConfigError, match=r"multiples of 32 .*height=80, width=64"):
        build(make_context(height=80, width=64))


# ----------------------------------------------------------------------------- weights
def test_lightning_pose_only_weights_need_a_local_file_and_say_where_they_come_from():
    config = LP_CONFIG % "resnet50_animal_ap10k"
    assert lp_select(config, project=False).params.backbone_pretrained  # no project: fine
    with pytest.raises(ConfigError) as info:
        lp_select(config)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("model.backbone: resnet50_animal_ap10k's pretrained weights are "
                              "not downloaded at run time: fetch https://download.openmmlab.com"
                              "/mmpose/animal/resnet/res50_ap10k_256x256-35760eb8_20211029.pth")
    assert "model.backbone_checkpoint" in message and "backbone_pretrained: false" in message
    with pytest.raises(ParamError):
        PerViewCNN.validate_context(PerViewCNNParams(backbone="resnet50_human_hand"),
                                    make_context())
    PerViewCNN.validate_context(PerViewCNNParams(backbone="resnet50_animal_ap10k",
                                                 backbone_pretrained=False), make_context())


def test_a_missing_weights_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        lp_select(LP_CONFIG % "resnet50_animal_ap10k"
                  + "  backbone_checkpoint: weights/ap10k.pth\n", config_dir=str(tmp_path))
    message = str(info.value)
    assert message.startswith("model.backbone_checkpoint: file not found: weights/ap10k.pth")
    assert str(tmp_path / "weights" / "ap10k.pth") in message and "\n" not in message


def test_an_mmpose_style_weights_file_loads_into_the_cnn(tmp_path, recwarn):
    donor = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    torch.nn.init.normal_(donor.conv1.weight)
    state = {f"backbone.{k}": v for k, v in donor.state_dict().items()}
    state["keypoint_head.final_layer.weight"] = torch.zeros(3, 3)
    torch.save({"meta": {"epoch": 210}, "state_dict": state}, tmp_path / "res18.pth")
    net = build(make_context(base_dir=str(tmp_path)), backbone_checkpoint="res18.pth")
    assert all(torch.equal(v, donor.state_dict()[k]) for k, v in net.cnn.state_dict().items())
    assert not [w for w in recwarn if "backbone_checkpoint" in str(w.message)]
    light = PerViewCNN.architecture_only(net.params)
    assert light.backbone_checkpoint is None and light.backbone_pretrained is False


def test_a_weights_file_of_another_network_is_one_line(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"no tensor of .*other.pth matches this CNN"):
        build(make_context(base_dir=str(tmp_path)), backbone_checkpoint="other.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as info:
        build(make_context(base_dir=str(tmp_path)), backbone_checkpoint="bad.pth")
    assert "cannot read" in str(info.value) and "\n" not in str(info.value)


def test_imagenet_weights_come_from_timm_and_offline_is_one_line(monkeypatch):
    calls = []

    def offline(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
        calls.append((name, pretrained))
        raise OSError("We couldn't connect to 'https://huggingface.co'\nto load the files")

    monkeypatch.setattr(cnn_model.timm, "create_model", offline)
    with pytest.raises(ConfigError) as info:
        build(backbone="resnet50", backbone_pretrained=True)
    assert calls == [("resnet50.tv2_in1k", True)]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.backbone_pretrained: could not get resnet50's ImageNet "
                              "weights (timm 'resnet50.tv2_in1k'; is this machine offline?)")
    assert message.endswith("set model.backbone_checkpoint to a local weights file, or "
                            "model.backbone_pretrained: false")


def test_the_plugin_registers_heatmap():
    components = load_components()
    assert components.backbones.get("heatmap") is PerViewCNN
    assert components.backbones.entry("heatmap").provider == "mv-cnn"
