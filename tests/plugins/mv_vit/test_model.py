"""Tests of the multi-view transformer backbone (mv_vit.model, mv_vit.head, mv_vit.plugin)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
import yaml
from mv_vit.model import MultiviewTransformer, load_vit_checkpoint
from mv_vit.variants import VARIANTS

from mvcore.config.load import parse_config
from mvcore.errors import ConfigError

SIZE = 64


def make_config(
    backbone: str = "vit_micro_scratch",
    views: int = 2,
    ds: int = 2,
    size: int = SIZE,
    **model: Any,
) -> Any:
    """A minimal config for the MVT; ``model`` entries go to the ``model`` section."""
    raw = {
        "data": {
            "view_names": [f"cam{i}" for i in range(views)],
            "image_resize_dims": {"height": size, "width": size},
            "downsample_factor": ds,
        },
        "model": {"backbone": backbone, "model_type": "heatmap_multiview_transformer", **model},
    }
    return parse_config(raw)


def build(config: Any, keypoints: int = 3) -> MultiviewTransformer:
    params = MultiviewTransformer.validate_config(config)
    return MultiviewTransformer(config, params, config.num_views, keypoints)


def images(batch: int = 2, views: int = 2, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, size, size, generator=generator)


# ---------------------------------------------------------------------- cross-view attention
def test_changing_one_view_changes_the_other_views_heatmaps() -> None:
    model = build(make_config()).eval()
    x = images()
    x_changed = x.clone()
    x_changed[:, 1] = images(seed=1)[:, 1]
    with torch.no_grad():
        heat, heat_changed = model(x), model(x_changed)
        tokens, _ = model.embed(x)
        tokens_changed, _ = model.embed(x_changed)
        feats = model.encode(tokens.flatten(1, 2))
        feats_changed = model.encode(tokens_changed.flatten(1, 2))
        # control: the same network with cross-view attention blocked
        heat_blocked = model(x, block_cross_view_attention=True)
        heat_blocked_changed = model(x_changed, block_cross_view_attention=True)
    n = tokens.shape[2]
    effect_heat = (heat_changed[:, 0] - heat[:, 0]).abs().max()
    effect_feat = (feats_changed[:, :n] - feats[:, :n]).abs().max()
    control_heat = (heat_blocked_changed[:, 0] - heat_blocked[:, 0]).abs().max()
    assert effect_feat > 1e-2  # view 0's features move with view 1's pixels
    assert effect_heat > 1e-8
    assert control_heat <= 1e-3 * effect_heat
    # view 1's own heatmaps change in both cases
    assert (heat_blocked_changed[:, 1] - heat_blocked[:, 1]).abs().max() > 1e-8


def test_blocked_attention_equals_running_each_view_alone() -> None:
    """The control above is honest: with the block mask, view 0 is encoded as if alone."""
    model = build(make_config()).eval()
    x = images()
    with torch.no_grad():
        tokens, grid = model.embed(x)  # (B, V, n, D)
        alone = model.decode(model.encode(tokens[:, :1].flatten(1, 2)).unsqueeze(1), grid)
        blocked = model(x, block_cross_view_attention=True)
        joint = model(x)
    torch.testing.assert_close(blocked[:, :1], alone, rtol=1e-5, atol=1e-7)
    assert (joint[:, :1] - alone).abs().max() > 1e-8


# ---------------------------------------------------------------------- shapes and parameters
@pytest.mark.parametrize("ds", [1, 2, 3])
def test_output_shape_and_softmax(ds: int) -> None:
    model = build(make_config(ds=ds), keypoints=5).eval()
    with torch.no_grad():
        heat = model(images())
    side = SIZE // 2**ds
    assert heat.shape == (2, 2, 5, side, side)
    assert (heat >= 0).all()
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(2, 2, 5))


def test_heatmaps_are_float32_under_mixed_precision() -> None:
    model = build(make_config()).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        heat = model(images())
    assert heat.dtype == torch.float32
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(2, 2, 3))


def test_ds3_head_maps_to_keypoints_with_a_1x1_conv() -> None:
    model = build(make_config(ds=3), keypoints=4)
    assert model.head.n_deconv == 0
    conv = model.head.layers[-1]
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1)
    assert conv.out_channels == 4
    assert torch.count_nonzero(conv.bias) == 0


def test_three_views_and_larger_images() -> None:
    model = build(make_config(views=3, size=96), keypoints=2).eval()
    with torch.no_grad():
        heat = model(images(batch=1, views=3, size=96))
    assert heat.shape == (1, 3, 2, 24, 24)
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(1, 3, 2))


def test_wrong_number_of_views_in_the_batch_is_an_error() -> None:
    model = build(make_config(views=3))
    with pytest.raises(ValueError, match="expected images"):
        model(images(views=2))


def test_view_embeddings_differ_per_view_and_follow_the_seed() -> None:
    config = make_config(views=3)
    model = build(config)
    emb = model.view_embeddings.detach()
    assert emb.shape == (3, model.vit.embed_dim)
    assert not torch.allclose(emb[0], emb[1]) and not torch.allclose(emb[1], emb[2])
    assert 0.01 < emb.std().item() < 0.04
    torch.testing.assert_close(build(config).view_embeddings.detach(), emb)
    other = config.model_copy(deep=True)
    other.training.rng_seed_model_pt = 7
    assert not torch.allclose(build(other).view_embeddings.detach(), emb)


def test_same_config_builds_the_same_network_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build(make_config())
    after = torch.rand(1)
    b = build(make_config())
    assert torch.equal(before, after)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_gradients_reach_vit_head_and_view_embeddings() -> None:
    model = build(make_config()).train()
    heat = model(images())
    target = torch.zeros_like(heat)
    target[..., 3, 5] = 1.0
    ((heat - target) ** 2).sum().backward()
    groups = model.param_groups()
    for name in ("backbone", "head", "view_embeddings"):
        grads = [p.grad for p in groups[name] if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert model.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.vit.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.view_embeddings.grad.abs().sum() > 0


def test_param_groups_partition_the_parameters_backbone_first() -> None:
    model = build(make_config())
    groups = model.param_groups()
    assert list(groups) == ["backbone", "head", "view_embeddings"]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not model.vit.cls_token.requires_grad  # dropped token: frozen, not optimised


def test_backbone_params_overrides_and_extra_keys() -> None:
    config = make_config(
        ds=1, backbone_params={"embed_dim": 96, "depth": 1, "num_heads": 3, "deconv_channels": 8}
    )
    model = build(config)
    assert model.vit.embed_dim == 96 and len(model.vit.blocks) == 1
    assert model.head.layers[1].out_channels == 8  # the intermediate deconvolution
    with pytest.raises(ConfigError, match=r"model\.backbone_params\.embed_dimm"):
        MultiviewTransformer.validate_config(make_config(backbone_params={"embed_dimm": 96}))
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        MultiviewTransformer.validate_config(
            make_config(backbone_params={"embed_dim": 64, "num_heads": 3})
        )


def test_grad_checkpointing_gives_the_same_gradients() -> None:
    x = images()
    grads = []
    for flag in (False, True):
        model = build(make_config(backbone_params={"grad_checkpointing": flag})).train()
        model(x).pow(2).sum().backward()
        grads.append(model.vit.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


# ---------------------------------------------------------------------- config checks
SEED_YAML = """\
data:
    view_names: [top, bottom]
model:
    backbone: vits_dino
    model_type: heatmap_multiview_transformer
training:
    patch_mask:
        init_epoch: 40     # epoch to start patch masking
        final_epoch: 300   # epoch when patch masking reaches maximum
        init_ratio: 0.0    # initial masking ratio
        final_ratio: 0.5   # final masking ratio
"""


def test_seed_yaml_is_accepted_verbatim() -> None:
    config = parse_config(yaml.safe_load(SEED_YAML))
    params = MultiviewTransformer.validate_config(config)
    assert config.model.backbone == "vits_dino"
    assert config.model.model_type == MultiviewTransformer.name
    assert params.embed_dim is None
    assert config.training.patch_mask.final_ratio == 0.5


def test_unknown_backbone_has_did_you_mean_and_list() -> None:
    with pytest.raises(ConfigError) as info:
        MultiviewTransformer.validate_config(make_config(backbone="vits_dinoo"))
    message = str(info.value)
    assert "model.backbone" in message
    assert "Did you mean 'vits_dino'" in message
    for name in VARIANTS:
        assert name in message


def test_every_variant_name_is_valid() -> None:
    for name, variant in VARIANTS.items():
        config = make_config(backbone=name, backbone_pretrained=False)
        MultiviewTransformer.validate_config(config)
        assert variant.patch_size == 16
        assert variant.embed_dim % variant.num_heads == 0


def test_non_square_image_size_is_a_config_error() -> None:
    config = make_config()
    config.data.image_resize_dims.width = 128
    with pytest.raises(ConfigError, match=r"data\.image_resize_dims"):
        MultiviewTransformer.validate_config(config)


def test_fewer_than_two_views_is_a_config_error() -> None:
    config = make_config()
    config.data.view_names = []
    with pytest.raises(ConfigError, match=r"data\.view_names"):
        MultiviewTransformer.validate_config(config)
    with pytest.raises(ConfigError, match=r"data\.view_names"):
        MultiviewTransformer(make_config(), MultiviewTransformer.Params(), 1, 3)


def test_hub_arch_override_with_pretrained_weights_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone_params\.depth"):
        MultiviewTransformer.validate_config(
            make_config(backbone="vits_dino", backbone_params={"depth": 4})
        )
    # fine when the weights are not pretrained
    MultiviewTransformer.validate_config(
        make_config(backbone="vits_dino", backbone_pretrained=False, backbone_params={"depth": 4})
    )


def test_hub_architectures_build_without_weights() -> None:
    """vits_dino and vits_dinov2 (patch 14 -> 16) build offline with pretrained: false."""
    for name in ("vits_dino", "vits_dinov2"):
        model = build(make_config(backbone=name, backbone_pretrained=False))
        assert model.vit.embed_dim == 384 and len(model.vit.blocks) == 12
        assert model.vit.patch_embed.proj.kernel_size == (16, 16)


def test_pretrained_hub_variant_offline_gives_guidance(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    calls: list[tuple[str, bool]] = []
    original = timm.create_model

    def fake_create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
        calls.append((name, pretrained))
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return original(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    with pytest.raises(ConfigError) as info:
        build(make_config(backbone="vits_dino", backbone_pretrained=True))
    message = str(info.value)
    assert calls == [("vit_small_patch16_224.dino", True)]
    assert "no internet/hub access" in message
    assert "model.backbone_checkpoint" in message
    assert "model.backbone_pretrained: false" in message
    # scratch variants never ask for weights, whatever backbone_pretrained says
    calls.clear()
    build(make_config(backbone="vit_micro_scratch", backbone_pretrained=True))
    assert calls == [("vit_tiny_patch16_224", False)]


# ---------------------------------------------------------------------- checkpoints
def _assert_same_vit(a: MultiviewTransformer, b: MultiviewTransformer) -> None:
    for (key, va), vb in zip(a.vit.state_dict().items(), b.vit.state_dict().values()):
        assert torch.equal(va, vb), key


def test_checkpoint_loading_from_a_local_file(tmp_path: Any) -> None:
    source = build(make_config())
    path = tmp_path / "vit.pth"
    torch.save(source.vit.state_dict(), path)
    other_seed = make_config(backbone_checkpoint=str(path))
    other_seed.training.rng_seed_model_pt = 5
    fresh = copy.deepcopy(other_seed)
    fresh.model.backbone_checkpoint = None
    assert not torch.equal(build(fresh).vit.pos_embed, source.vit.pos_embed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact match warns about nothing
        loaded = build(other_seed)
    _assert_same_vit(source, loaded)


def test_checkpoint_prefixes_wrappers_and_safetensors(tmp_path: Any) -> None:
    source = build(make_config())
    wrapped = {"state_dict": {f"model.backbone.{k}": v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "lightning.ckpt")
    _assert_same_vit(
        source, build(make_config(backbone_checkpoint=str(tmp_path / "lightning.ckpt")))
    )

    from safetensors.torch import save_file

    save_file(
        {f"module.{k}": v.contiguous() for k, v in source.vit.state_dict().items()},
        str(tmp_path / "vit.safetensors"),
    )
    _assert_same_vit(
        source, build(make_config(backbone_checkpoint=str(tmp_path / "vit.safetensors")))
    )


def test_checkpoint_relative_to_config_dir_and_resampled_pos_embed(tmp_path: Any) -> None:
    source = build(make_config())  # 64 px: 4x4 position grid
    torch.save(source.vit.state_dict(), tmp_path / "vit.pt")
    config = make_config(size=128, backbone_checkpoint="vit.pt")
    config.config_dir = str(tmp_path)
    model = build(config)  # 8x8 grid: pos_embed resampled by timm, everything else equal
    assert model.vit.pos_embed.shape[1] == 1 + 64
    torch.testing.assert_close(
        model.vit.blocks[1].mlp.fc2.weight, source.vit.blocks[1].mlp.fc2.weight
    )


def test_dinov2_patch14_checkpoint_is_resampled_to_patch16(tmp_path: Any) -> None:
    """A local DINOv2 state dict (patch 14, 37x37 positions) loads into vits_dinov2 (16).

    Depth 2 on both sides keeps the test fast; the embeddings are the full-size ones."""
    import timm

    original = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, depth=2
    )
    torch.save(original.state_dict(), tmp_path / "dinov2_vits14.pth")
    config = make_config(
        backbone="vits_dinov2",
        backbone_checkpoint=str(tmp_path / "dinov2_vits14.pth"),
        backbone_params={"depth": 2},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing, unexpected or skipped for shape
        model = build(config)
    assert original.pos_embed.shape[1] == 1 + 37 * 37
    assert model.vit.patch_embed.proj.weight.shape[-2:] == (16, 16)
    assert model.vit.pos_embed.shape[1] == 1 + (SIZE // 16) ** 2
    torch.testing.assert_close(
        model.vit.blocks[1].attn.qkv.weight, original.blocks[1].attn.qkv.weight
    )


def test_partial_checkpoint_warns_with_counts(tmp_path: Any) -> None:
    source = build(make_config())
    state = {k: v for k, v in source.vit.state_dict().items() if not k.startswith("blocks.1.")}
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "partial.pth")
    target = build(make_config())
    with pytest.warns(UserWarning, match=r"missing.*1 unexpected") as record:
        report = load_vit_checkpoint(target.vit, tmp_path / "partial.pth")
    assert report["missing"] == sum(k.startswith("blocks.1.") for k in source.vit.state_dict())
    assert report["unexpected"] == 1 and report["shape_mismatch"] == 0
    assert record


def test_missing_or_unrelated_checkpoint_is_a_config_error(tmp_path: Any) -> None:
    missing = tmp_path / "nope.pth"
    config = make_config(backbone_checkpoint=str(missing))
    with pytest.raises(ConfigError, match=r"model\.backbone_checkpoint.*nope\.pth"):
        MultiviewTransformer.validate_config(config)
    with pytest.raises(ConfigError, match="nope.pth"):
        MultiviewTransformer(config, MultiviewTransformer.Params(), 2, 3)
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "unrelated.pth")
    with pytest.raises(ConfigError, match="no tensor"):
        build(make_config(backbone_checkpoint=str(tmp_path / "unrelated.pth")))


# ---------------------------------------------------------------------- plugin registration
def test_plugin_registers_the_backbone_lazily() -> None:
    from mv_vit import plugin

    from mvcore.models.base import Backbone
    from mvcore.plugin.registry import Registry

    registry = Registry("backbone", base=Backbone)
    plugin.mvcore_register_backbones(registry=registry.scoped("mv-vit", "0.1.0"))
    assert registry.names() == ["heatmap_multiview_transformer"]
    assert isinstance(registry.entry("heatmap_multiview_transformer").target, str)
    assert registry.get("heatmap_multiview_transformer") is MultiviewTransformer


def test_every_trainable_parameter_gets_a_gradient():
    """DDP fails on trainable parameters that never receive a gradient (e.g. the class token)."""
    config = parse_config(yaml.safe_load(
        "data: {image_resize_dims: {height: 32, width: 32}, view_names: [a, b]}\n"
        "model: {backbone: vit_micro_scratch, backbone_pretrained: false}\n"))
    model = MultiviewTransformer(config, MultiviewTransformer.validate_config(config), 2, 3)
    model(torch.randn(2, 2, 3, 32, 32)).square().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
