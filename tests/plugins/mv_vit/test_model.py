"""Tests of the multi-view transformer backbone (mv_vit.model, mv_vit.head, mv_vit.plugin)."""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams, load_vit_checkpoint
from mv_vit.variants import VARIANTS
from pydantic import ValidationError

from mvcore.build import build_backbone, select_backbone
from mvcore.build import make_context as run_context
from mvcore.config.load import parse_config
from mvcore.context import Context
from mvcore.errors import ConfigError, ParamError
from mvcore.plugin.components import load_components
from mvcore.testing import check_backbone

SIZE = 64


def make_context(
    views: int = 2,
    ds: int = 2,
    size: int = SIZE,
    keypoints: int = 3,
    seed: int = 0,
    base_dir: str | None = None,
) -> Context:
    """A project with square ``size`` images, ``views`` views and ``keypoints`` keypoints."""
    return Context(
        view_names=tuple(f"cam{i}" for i in range(views)),
        keypoint_names=tuple(f"kp{k}" for k in range(keypoints)),
        image_height=size,
        image_width=size,
        downsample_factor=ds,
        seed=seed,
        base_dir=base_dir,
    )


def make_params(backbone: str = "vit_micro_scratch", **fields: Any) -> MultiviewTransformerParams:
    """MVT params; ``fields`` are the other ``MultiviewTransformerParams`` fields."""
    return MultiviewTransformerParams(backbone=backbone, **fields)


def build(
    params: MultiviewTransformerParams | None = None, context: Context | None = None
) -> MultiviewTransformer:
    """Check the params against the project, then build, as the core does."""
    params = make_params() if params is None else params
    context = make_context() if context is None else context
    MultiviewTransformer.validate_context(params, context)
    return MultiviewTransformer(params, context)


def lp_config(text: str, config_dir: str | None = None) -> Any:
    """A Lightning Pose style config: the MVT's keys in ``model`` and ``training``."""
    config = parse_config(yaml.safe_load(text))
    config.config_dir = config_dir
    return config


def lp_context(config: Any, keypoints: int = 3) -> Context:
    """The context training builds for ``config`` on a project with the config's views."""
    project = SimpleNamespace(
        view_names=list(config.data.view_names),
        keypoint_names=[f"kp{k}" for k in range(keypoints)],
        has_calibration=False,
    )
    return run_context(config, project)


def lp_select(config: Any, context: Context | None = None) -> Any:
    """The backbone the config selects, params validated and checked (as training does)."""
    context = lp_context(config) if context is None else context
    return select_backbone(config, load_components(refresh=True), context)


def images(batch: int = 2, views: int = 2, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, size, size, generator=generator)


# ---------------------------------------------------------------------- contract
def test_backbone_contract() -> None:
    check_backbone(
        MultiviewTransformer, {"backbone": "vit_micro_scratch", "backbone_pretrained": False}
    )


# ---------------------------------------------------------------------- cross-view attention
def test_changing_one_view_changes_the_other_views_heatmaps() -> None:
    model = build().eval()
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
    model = build().eval()
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
    context = make_context(ds=ds, keypoints=5)
    model = build(context=context).eval()
    with torch.no_grad():
        heat = model(images())
    side = SIZE // 2**ds
    assert heat.shape == (2, 2, 5, side, side) and context.heatmap_size == (side, side)
    assert (heat >= 0).all()
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(2, 2, 5))


def test_heatmaps_are_float32_under_mixed_precision() -> None:
    model = build().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        heat = model(images())
    assert heat.dtype == torch.float32
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(2, 2, 3))


def test_ds3_head_maps_to_keypoints_with_a_1x1_conv() -> None:
    model = build(context=make_context(ds=3, keypoints=4))
    assert model.head.n_deconv == 0
    conv = model.head.layers[-1]
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1)
    assert conv.out_channels == 4
    assert torch.count_nonzero(conv.bias) == 0


def test_three_views_and_larger_images() -> None:
    model = build(context=make_context(views=3, size=96, keypoints=2)).eval()
    with torch.no_grad():
        heat = model(images(batch=1, views=3, size=96))
    assert heat.shape == (1, 3, 2, 24, 24)
    torch.testing.assert_close(heat.sum(dim=(-2, -1)), torch.ones(1, 3, 2))


def test_wrong_number_of_views_in_the_batch_is_an_error() -> None:
    model = build(context=make_context(views=3))
    with pytest.raises(ValueError, match="expected images"):
        model(images(views=2))


def test_view_embeddings_differ_per_view_and_follow_the_seed() -> None:
    context = make_context(views=3)
    model = build(context=context)
    emb = model.view_embeddings.detach()
    assert emb.shape == (3, model.vit.embed_dim)
    assert not torch.allclose(emb[0], emb[1]) and not torch.allclose(emb[1], emb[2])
    assert 0.01 < emb.std().item() < 0.04
    torch.testing.assert_close(build(context=context).view_embeddings.detach(), emb)
    other = dataclasses.replace(context, seed=7)
    assert not torch.allclose(build(context=other).view_embeddings.detach(), emb)


def test_seed_comes_from_training_rng_seed_model_pt() -> None:
    """Through the LP config: ``training.rng_seed_model_pt`` is the context's seed."""
    text = (
        "data: {image_resize_dims: {height: 64, width: 64}, view_names: [a, b]}\n"
        "model: {backbone: vit_micro_scratch, backbone_pretrained: false}\n"
        "training: {rng_seed_model_pt: %d}\n"
    )
    built = []
    for seed in (3, 3, 4):
        config = lp_config(text % seed)
        context = lp_context(config)
        assert context.seed == seed
        built.append(build_backbone(lp_select(config, context), context))
    torch.testing.assert_close(built[0].view_embeddings, built[1].view_embeddings)
    assert not torch.allclose(built[0].view_embeddings, built[2].view_embeddings)


def test_same_config_builds_the_same_network_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build()
    after = torch.rand(1)
    b = build()
    assert torch.equal(before, after)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_gradients_reach_vit_head_and_view_embeddings() -> None:
    model = build().train()
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
    model = build()
    groups = model.param_groups()
    assert list(groups) == ["backbone", "head", "view_embeddings"]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not model.vit.cls_token.requires_grad  # dropped token: frozen, not optimised


def test_backbone_params_overrides_and_extra_keys() -> None:
    params = make_params(embed_dim=96, depth=1, num_heads=3, deconv_channels=8)
    model = build(params, make_context(ds=1))
    assert model.vit.embed_dim == 96 and len(model.vit.blocks) == 1
    assert model.head.layers[1].out_channels == 8  # the intermediate deconvolution
    with pytest.raises(ValidationError, match="embed_dimm"):
        MultiviewTransformerParams.model_validate({"embed_dimm": 96})
    with pytest.raises(ParamError, match="not divisible by num_heads") as info:
        MultiviewTransformer.validate_context(
            make_params(embed_dim=64, num_heads=3), make_context()
        )
    assert info.value.field == "embed_dim"
    # the same two mistakes in a config name the key the user wrote
    base = "data: {view_names: [a, b]}\nmodel: {backbone: vit_micro_scratch, backbone_params: %s}"
    with pytest.raises(ConfigError, match=r"model\.backbone_params\.embed_dimm: unknown key"):
        lp_select(lp_config(base % "{embed_dimm: 96}"))
    with pytest.raises(
        ConfigError, match=r"model\.backbone_params\.embed_dim: .*not divisible by num_heads"
    ):
        lp_select(lp_config(base % "{embed_dim: 64, num_heads: 3}"))


def test_embed_dim_must_suit_the_head() -> None:
    with pytest.raises(ParamError, match="divisible by 4") as info:
        MultiviewTransformer.validate_context(
            make_params(embed_dim=66, num_heads=3), make_context()
        )
    assert info.value.field == "embed_dim"


def test_grad_checkpointing_gives_the_same_gradients() -> None:
    x = images()
    grads = []
    for flag in (False, True):
        model = build(make_params(grad_checkpointing=flag)).train()
        model(x).pow(2).sum().backward()
        grads.append(model.vit.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_architecture_only_drops_the_weights_and_keeps_the_network(tmp_path: Any) -> None:
    source = build()
    torch.save(source.vit.state_dict(), tmp_path / "vit.pth")
    params = make_params("vits_dino", backbone_checkpoint=str(tmp_path / "vit.pth"), depth=2)
    light = MultiviewTransformer.architecture_only(params)
    assert light.backbone_pretrained is False and light.backbone_checkpoint is None
    assert light.model_dump(exclude={"backbone_pretrained", "backbone_checkpoint"}) == (
        params.model_dump(exclude={"backbone_pretrained", "backbone_checkpoint"})
    )
    assert params.backbone_checkpoint is not None  # the original params are unchanged
    model = build(light)
    assert model.vit.embed_dim == 384 and len(model.vit.blocks) == 2


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
    config = lp_config(SEED_YAML)
    selected = lp_select(config)
    params = selected.params
    assert selected.cls is MultiviewTransformer
    assert config.model.model_type == MultiviewTransformer.name
    assert isinstance(params, MultiviewTransformerParams)
    assert params.backbone == "vits_dino" and params.backbone_pretrained
    assert params.embed_dim is None
    assert params.patch_mask.final_ratio == 0.5
    assert selected.key_of("backbone") == "model.backbone"
    assert selected.key_of("patch_mask") == "training.patch_mask"


def test_unknown_backbone_has_did_you_mean_and_list() -> None:
    with pytest.raises(ValidationError) as direct:
        MultiviewTransformerParams(backbone="vits_dinoo")
    with pytest.raises(ConfigError) as info:
        lp_select(lp_config("data: {view_names: [a, b]}\nmodel: {backbone: vits_dinoo}\n"))
    for message in (str(direct.value), str(info.value)):
        assert "Did you mean 'vits_dino'" in message
        for name in VARIANTS:
            assert name in message
    assert str(info.value).startswith("model.backbone:")


def test_every_variant_name_is_valid() -> None:
    for name, variant in VARIANTS.items():
        params = make_params(name, backbone_pretrained=False)
        MultiviewTransformer.validate_context(params, make_context())
        assert variant.patch_size == 16
        assert variant.embed_dim % variant.num_heads == 0


def test_non_square_image_size_is_a_config_error() -> None:
    context = dataclasses.replace(make_context(), image_width=128)
    with pytest.raises(ConfigError, match=r"data\.image_resize_dims"):
        MultiviewTransformer.validate_context(make_params(), context)
    config = lp_config(
        "data: {view_names: [a, b], image_resize_dims: {height: 64, width: 128}}\n"
        "model: {backbone: vit_micro_scratch}\n"
    )
    with pytest.raises(ConfigError, match=r"data\.image_resize_dims.*width=128"):
        lp_select(config)


def test_fewer_than_two_views_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.view_names"):
        MultiviewTransformer.validate_context(make_params(), make_context(views=1))
    with pytest.raises(ConfigError, match=r"data\.view_names"):
        MultiviewTransformer(make_params(), make_context(views=1))


def test_hub_arch_override_with_pretrained_weights_is_a_config_error() -> None:
    with pytest.raises(ParamError, match="pretrained weights fix") as info:
        MultiviewTransformer.validate_context(make_params("vits_dino", depth=4), make_context())
    assert info.value.field == "depth"
    with pytest.raises(ConfigError, match=r"model\.backbone_params\.depth"):
        lp_select(lp_config(
            "data: {view_names: [a, b]}\n"
            "model: {backbone: vits_dino, backbone_params: {depth: 4}}\n"
        ))
    # fine when the weights are not pretrained
    MultiviewTransformer.validate_context(
        make_params("vits_dino", backbone_pretrained=False, depth=4), make_context()
    )


def test_hub_architectures_build_without_weights() -> None:
    """vits_dino and vits_dinov2 (patch 14 -> 16) build offline with pretrained: false."""
    for name in ("vits_dino", "vits_dinov2"):
        model = build(make_params(name, backbone_pretrained=False))
        assert model.vit.embed_dim == 384 and len(model.vit.blocks) == 12
        assert model.vit.patch_embed.proj.kernel_size == (16, 16)


@pytest.mark.parametrize(("backbone", "hub_name"), [
    ("vits_dino", "vit_small_patch16_224.dino"),
    ("vitb_dinov3", "vit_base_patch16_dinov3.lvd1689m"),
])
def test_pretrained_hub_variant_offline_gives_guidance(
        monkeypatch: pytest.MonkeyPatch, backbone: str, hub_name: str) -> None:
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
        build(make_params(backbone, backbone_pretrained=True))
    message = str(info.value)
    assert calls == [(hub_name, True)]
    assert f"{backbone!r}" in message
    assert "no internet/hub access" in message
    assert "model.backbone_checkpoint" in message
    assert "model.backbone_pretrained: false" in message
    # scratch variants never ask for weights, whatever backbone_pretrained says
    calls.clear()
    build(make_params("vit_micro_scratch", backbone_pretrained=True))
    assert calls == [("vit_tiny_patch16_224", False)]
    # architecture_only never asks for weights either (prediction rebuilds offline)
    calls.clear()
    build(MultiviewTransformer.architecture_only(make_params("vits_dino")))
    assert calls == [(VARIANTS["vits_dino"].timm_name, False)]


# ---------------------------------------------------------------------- checkpoints
def _assert_same_vit(a: MultiviewTransformer, b: MultiviewTransformer) -> None:
    for (key, va), vb in zip(a.vit.state_dict().items(), b.vit.state_dict().values()):
        assert torch.equal(va, vb), key


def test_checkpoint_loading_from_a_local_file(tmp_path: Any) -> None:
    source = build()
    path = tmp_path / "vit.pth"
    torch.save(source.vit.state_dict(), path)
    other_seed = make_context(seed=5)
    assert not torch.equal(build(context=other_seed).vit.pos_embed, source.vit.pos_embed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact match warns about nothing
        loaded = build(make_params(backbone_checkpoint=str(path)), other_seed)
    _assert_same_vit(source, loaded)


def test_checkpoint_prefixes_wrappers_and_safetensors(tmp_path: Any) -> None:
    source = build()
    wrapped = {"state_dict": {f"model.backbone.{k}": v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "lightning.ckpt")
    _assert_same_vit(
        source, build(make_params(backbone_checkpoint=str(tmp_path / "lightning.ckpt")))
    )

    from safetensors.torch import save_file

    save_file(
        {f"module.{k}": v.contiguous() for k, v in source.vit.state_dict().items()},
        str(tmp_path / "vit.safetensors"),
    )
    _assert_same_vit(
        source, build(make_params(backbone_checkpoint=str(tmp_path / "vit.safetensors")))
    )


def test_checkpoint_relative_to_config_dir_and_resampled_pos_embed(tmp_path: Any) -> None:
    source = build()  # 64 px: 4x4 position grid
    torch.save(source.vit.state_dict(), tmp_path / "vit.pt")
    params = make_params(backbone_checkpoint="vit.pt")
    model = build(params, make_context(size=128, base_dir=str(tmp_path)))
    # 8x8 grid: pos_embed resampled by timm, everything else equal
    assert model.vit.pos_embed.shape[1] == 1 + 64
    torch.testing.assert_close(
        model.vit.blocks[1].mlp.fc2.weight, source.vit.blocks[1].mlp.fc2.weight
    )
    # through a config: relative to the config's folder (the context's base_dir)
    config = lp_config(
        "data: {view_names: [a, b], image_resize_dims: {height: 128, width: 128}}\n"
        "model: {backbone: vit_micro_scratch, backbone_checkpoint: vit.pt}\n",
        config_dir=str(tmp_path),
    )
    context = lp_context(config)
    assert context.base_dir == str(tmp_path)
    from_config = build_backbone(lp_select(config, context), context)
    _assert_same_vit(model, from_config)


def test_dinov2_patch14_checkpoint_is_resampled_to_patch16(tmp_path: Any) -> None:
    """A local DINOv2 state dict (patch 14, 37x37 positions) loads into vits_dinov2 (16).

    Depth 2 on both sides keeps the test fast; the embeddings are the full-size ones."""
    import timm

    original = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, depth=2
    )
    torch.save(original.state_dict(), tmp_path / "dinov2_vits14.pth")
    params = make_params(
        "vits_dinov2", backbone_checkpoint=str(tmp_path / "dinov2_vits14.pth"), depth=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing, unexpected or skipped for shape
        model = build(params)
    assert original.pos_embed.shape[1] == 1 + 37 * 37
    assert model.vit.patch_embed.proj.weight.shape[-2:] == (16, 16)
    assert model.vit.pos_embed.shape[1] == 1 + (SIZE // 16) ** 2
    torch.testing.assert_close(
        model.vit.blocks[1].attn.qkv.weight, original.blocks[1].attn.qkv.weight
    )


def test_partial_checkpoint_warns_with_counts(tmp_path: Any) -> None:
    source = build()
    state = {k: v for k, v in source.vit.state_dict().items() if not k.startswith("blocks.1.")}
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "partial.pth")
    target = build()
    with pytest.warns(UserWarning, match=r"missing.*1 unexpected") as record:
        report = load_vit_checkpoint(target.vit, tmp_path / "partial.pth")
    assert report["missing"] == sum(k.startswith("blocks.1.") for k in source.vit.state_dict())
    assert report["unexpected"] == 1 and report["shape_mismatch"] == 0
    assert record


def test_missing_or_unrelated_checkpoint_is_a_config_error(tmp_path: Any) -> None:
    missing = tmp_path / "nope.pth"
    params = make_params(backbone_checkpoint=str(missing))
    with pytest.raises(ParamError, match=r"nope\.pth") as info:
        MultiviewTransformer.validate_context(params, make_context())
    assert info.value.field == "backbone_checkpoint"
    with pytest.raises(ParamError, match=r"nope\.pth"):
        MultiviewTransformer(params, make_context())
    # in a config: the key path the user wrote
    config = lp_config(
        "data: {view_names: [a, b], image_resize_dims: {height: 64, width: 64}}\n"
        f"model: {{backbone: vit_micro_scratch, backbone_checkpoint: '{missing}'}}\n"
    )
    with pytest.raises(ConfigError, match=r"model\.backbone_checkpoint.*nope\.pth"):
        lp_select(config)
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "unrelated.pth")
    with pytest.raises(ConfigError, match="no tensor"):
        build(make_params(backbone_checkpoint=str(tmp_path / "unrelated.pth")))


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
    config = lp_config(
        "data: {image_resize_dims: {height: 32, width: 32}, view_names: [a, b]}\n"
        "model: {backbone: vit_micro_scratch, backbone_pretrained: false}\n"
    )
    context = lp_context(config)
    model = build_backbone(lp_select(config, context), context)
    assert isinstance(model, MultiviewTransformer)
    model(torch.randn(2, 2, 3, 32, 32)).square().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


# ------------------------------------------------------------------ speed options
def _heatmaps(model: MultiviewTransformer, seed: int = 0) -> torch.Tensor:
    images = torch.randn(2, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(images)


def test_speed_options_default_to_the_measured_choices() -> None:
    params = make_params()
    assert (params.attention, params.compile, params.autocast, params.channels_last) == (
        "sdpa", "off", "auto", False)
    with pytest.raises(ValidationError):
        make_params(attention="flash")
    with pytest.raises(ValidationError):
        make_params(autocast="int8")


@pytest.mark.parametrize("options", [{"attention": "math"}, {"channels_last": True}])
def test_speed_options_compute_the_same_function(options: dict[str, Any]) -> None:
    reference = build()
    model = build(make_params(**options))
    assert model.state_dict().keys() == reference.state_dict().keys()
    model.load_state_dict(reference.state_dict())
    torch.testing.assert_close(_heatmaps(model), _heatmaps(reference), rtol=1e-5, atol=1e-7)


def test_attention_option_selects_the_kernel() -> None:
    assert all(b.attn.fused_attn for b in build().vit.blocks)
    assert not any(b.attn.fused_attn for b in build(make_params(attention="math")).vit.blocks)


def test_channels_last_lays_out_the_convolutions_nhwc() -> None:
    model = build(make_params(channels_last=True))
    weight = model.vit.patch_embed.proj.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()


def test_autocast_bf16_runs_the_blocks_in_bf16_and_returns_float32() -> None:
    reference = build()
    model = build(make_params(autocast="bf16"))
    model.load_state_dict(reference.state_dict())
    seen: list[torch.dtype] = []
    model.vit.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = _heatmaps(model)
    assert seen == [torch.bfloat16]
    assert out.dtype == torch.float32
    # bf16 keeps ~3 significant digits: the softmax heatmaps stay close, not equal
    torch.testing.assert_close(out, _heatmaps(reference), rtol=0.05, atol=1e-3)
    assert not torch.equal(out, _heatmaps(reference))


def test_autocast_modes_resolve_to_a_dtype() -> None:
    from mv_vit.model import autocast_dtype

    assert autocast_dtype("off", "cuda") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("fp16", "cuda") is torch.float16
    assert autocast_dtype("auto", "cpu") is None  # the default: float32 on CPU


def test_autocast_auto_leaves_an_active_autocast_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from mv_vit.model import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: True)
    assert autocast_dtype("auto", "cuda") is None  # training.precision decides
    assert autocast_dtype("bf16", "cuda") is torch.bfloat16  # explicit wins


def test_default_network_stays_float32_on_cpu() -> None:
    model = build()
    seen: list[torch.dtype] = []
    model.vit.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    _heatmaps(model)
    assert seen == [torch.float32]


def test_compile_blocks_compiles_in_place_keeping_checkpoint_keys() -> None:
    eager = build()
    compiled = build(make_params(compile="blocks"))
    # nn.Module.compile: the blocks stay the same modules, so checkpoints load either way
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert all(b._compiled_call_impl is not None for b in compiled.vit.blocks)
    assert all(b._compiled_call_impl is None for b in eager.vit.blocks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_speed_options_on_cuda_compute_the_same_function() -> None:
    # on a GPU the defaults run sdpa (flash / memory-efficient kernels) in bf16 (autocast: auto)
    reference = build(make_params(autocast="off")).cuda()
    images = torch.randn(2, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        expected = reference.eval()(images)
        for options in ({}, {"attention": "math"}, {"channels_last": True}):
            model = build(make_params(**options)).cuda()
            model.load_state_dict(reference.state_dict())
            out = model.eval()(images)
            assert out.dtype == torch.float32 and out.is_cuda
            bf16 = torch.cuda.is_bf16_supported() and options.get("autocast", "auto") == "auto"
            tol = {"rtol": 0.05, "atol": 1e-3} if bf16 else {"rtol": 1e-4, "atol": 1e-6}
            torch.testing.assert_close(out, expected, **tol)
