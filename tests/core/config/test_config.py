"""Config pass 1: LP configs and the seeds' snippets load; errors name the key path.

Lightning Pose keys that only one component reads are lifted into ``config.lightning_pose``
here; their values are validated by the component (pass 2, ``tests/integration``)."""

import textwrap

import pytest
import yaml

from mvcore.config import load_config
from mvcore.config.load import apply_overrides, dump_config, parse_config
from mvcore.errors import ConfigError

LP_MULTIVIEW = textwrap.dedent("""
    data:
      image_resize_dims: {height: 256, width: 256}
      data_dir: /data/project
      video_dir: /data/project/videos
      csv_file: [CollectedData_cam0.csv, CollectedData_cam1.csv]
      bbox_file: [bboxes_cam0.csv, bboxes_cam1.csv]
      view_names: [cam0, cam1]
      num_keypoints: null
      keypoint_names: null
      mirrored_column_matches: null
      columns_for_singleview_pca: null
    training:
      imgaug: dlc
      imgaug_3d: true
      imgaug_hflip: false
      train_batch_size: 16
      val_batch_size: 32
      test_batch_size: 32
      train_prob: 0.95
      val_prob: 0.05
      train_frames: 1
      num_gpus: 1
      unfreezing_epoch: 20
      min_epochs: 300
      max_epochs: 300
      log_every_n_steps: 10
      check_val_every_n_epoch: 5
      ckpt_every_n_epochs: null
      early_stopping: false
      early_stop_patience: 3
      rng_seed_data_pt: 0
      rng_seed_model_pt: 0
      optimizer: Adam
      optimizer_params: {learning_rate: 5.0e-5}
      lr_scheduler: multisteplr
      lr_scheduler_params:
        multisteplr: {milestones: [150, 200, 250], gamma: 0.5}
      uniform_heatmaps_for_nan_keypoints: true
      patch_mask: {init_epoch: 40, final_epoch: 300, init_ratio: 0.0, final_ratio: 0.5}
    model:
      losses_to_use: []
      backbone: vits_dino
      model_type: heatmap_multiview_transformer
      heatmap_loss_type: mse
      model_name: test
      checkpoint: null
    dali:
      base: {train: {sequence_length: 32}, predict: {sequence_length: 96}}
    losses:
      pca_multiview: {log_weight: 11.0, components_to_keep: 3, epsilon: null}
      pca_singleview: {log_weight: 11.0, components_to_keep: 0.99, epsilon: null}
      temporal: {log_weight: 11.0, epsilon: 20.0, prob_threshold: 0.05}
      supervised_reprojection_heatmap_mse: {log_weight: 3.0}
    eval:
      predict_vids_after_training: true
      test_videos_directory: ${data.video_dir}
      save_vids_after_training: false
      colormap: cool
      confidence_thresh_for_vid: 0.90
    callbacks:
      anneal_weight:
        attr_name: total_unsupervised_importance
        init_val: 0.0
        increase_factor: 0.01
        final_val: 1.0
        freeze_until_epoch: 60
    hydra:
      run: {dir: "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}"}
""")


def test_lightning_pose_multiview_config_loads_unchanged(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(LP_MULTIVIEW)
    config = load_config(path)
    assert config.lightning_pose == {
        "data.mirrored_column_matches": None,
        "data.columns_for_singleview_pca": None,
        "model.backbone": "vits_dino",
        "training.patch_mask": {"init_epoch": 40, "final_epoch": 300, "init_ratio": 0.0,
                                "final_ratio": 0.5},
    }
    assert not hasattr(config.training, "patch_mask")  # the core schema does not carry it
    assert config.callbacks.anneal_weight.freeze_until_epoch == 60
    assert config.eval.test_videos_directory == "/data/project/videos"  # interpolated
    assert config.losses["supervised_reprojection_heatmap_mse"] == {"log_weight": 3.0}
    assert config.config_dir == str(tmp_path)
    dumped = dump_config(config)  # saved with a run: Lightning Pose's shape again
    assert dumped["training"]["patch_mask"]["final_ratio"] == 0.5
    assert dumped["model"]["backbone"] == "vits_dino"
    again = parse_config(dumped)
    assert again.lightning_pose == config.lightning_pose
    assert dump_config(again) == dumped


@pytest.mark.parametrize("snippet", [
    "model:\n    backbone: vits_dino\n    model_type: heatmap_multiview_transformer\n",
    "training:\n    patch_mask:\n        init_epoch: 40     # epoch to start patch masking\n"
    "        final_epoch: 300   # epoch when patch masking reaches maximum\n"
    "        init_ratio: 0.0    # initial masking ratio\n"
    "        final_ratio: 0.5   # final masking ratio\n",
    "training:\n    imgaug: dlc\n    imgaug_3d: true\n",
    "losses:\n    supervised_pairwise_projections:\n        log_weight: 0.5\n",
    "losses:\n    supervised_reprojection_heatmap_mse:\n        log_weight: 0.5\n",
    "losses:\n    supervised_reprojection_heatmap_mse:\n        log_weight: 3.0\n",
    "losses:\n    supervised_reprojection_heatmap_mse:\n        log_weight: null\n",
    "callbacks:\n    anneal_weight:\n        attr_name: total_unsupervised_importance\n"
    "        init_val: 0.0\n        increase_factor: 0.01\n        final_val: 1.0\n"
    "        freeze_until_epoch: 60\n",
])
def test_seed_snippets_are_valid_verbatim(snippet):
    parse_config(yaml.safe_load(snippet))


def test_unknown_key_names_path_and_nearest_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"optimizer_params": {"learning_rat": 0.5}}})
    message = str(info.value)
    assert "training.optimizer_params.learning_rat: unknown key" in message
    assert "did you mean 'training.optimizer_params.learning_rate'?" in message
    with pytest.raises(ConfigError) as info:  # Lightning Pose keys count as known keys
        parse_config({"training": {"patch_msk": {"final_ratio": 0.5}}})
    assert "did you mean 'training.patch_mask'?" in str(info.value)


def test_bad_value_names_path_value_and_rule():
    with pytest.raises(ConfigError) as info:
        parse_config({"data": {"image_resize_dims": {"height": 100}}})
    assert "data.image_resize_dims.height" in str(info.value)
    assert "multiple of 16" in str(info.value) and "100" in str(info.value)
    with pytest.raises(ConfigError, match="data.downsample_factor"):
        parse_config({"data": {"downsample_factor": 4}})


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="one label CSV per view"):
        parse_config({"data": {"view_names": ["a", "b"], "csv_file": ["x.csv"]}})
    with pytest.raises(ConfigError, match="train_prob"):
        parse_config({"training": {"train_prob": 0.9, "val_prob": 0.2}})
    with pytest.raises(ConfigError, match="single view"):
        parse_config({"data": {"view_names": ["a"]}})


def test_overrides_parse_yaml_values_and_create_sections():
    raw = apply_overrides({"training": {"max_steps": None}},
                          ["training.max_steps=200", "training.patch_mask.final_ratio=0.3",
                           "model.losses_to_use=[temporal]"])
    assert raw["training"]["max_steps"] == 200
    assert raw["training"]["patch_mask"] == {"final_ratio": 0.3}
    assert raw["model"]["losses_to_use"] == ["temporal"]
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["no_equals_sign"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_references_inside_the_hydra_section_are_left_alone():
    config = parse_config({"hydra": {"sweep": {"subdir": "${hydra.job.num}"}},
                           "eval": {"test_videos_directory": "${data.video_dir}"},
                           "data": {"video_dir": "videos"}})
    assert config.hydra == {"sweep": {"subdir": "${hydra.job.num}"}}
    assert config.eval.test_videos_directory == "videos"


#: values ``config_default_multiview.yaml`` leaves to fill in, filled
FILLED = ["data.image_resize_dims.height=256", "data.image_resize_dims.width=256",
          "data.data_dir=/data/project", "data.video_dir=/data/project/videos"]


def test_lightning_pose_multiview_template_loads_once_its_placeholders_are_filled(shared_data):
    path = shared_data / "lightning-pose-configs" / "config_default_multiview.yaml"
    with pytest.raises(ConfigError) as info:  # the template leaves paths and the size to fill
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"invalid config {path}: fill in the values left open")
    for key in ("data.data_dir", "data.video_dir", "data.image_resize_dims.height",
                "data.image_resize_dims.width"):
        assert key in message
    assert "'/replace/with/your/path'" in message and "(null)" in message
    # a reference to a placeholder is not one to fill in; the hydra section is left alone
    assert "eval.test_videos_directory" not in message and "hydra" not in message
    with pytest.raises(ConfigError, match=r"fill in .*: data.data_dir, data.video_dir \("):
        load_config(path, FILLED[:2])
    config = load_config(path, FILLED)
    assert config.lightning_pose["model.backbone"] == "vits_dino"
    assert config.data.view_names == ["cam0", "cam1"]
    assert config.eval.test_videos_directory == "/data/project/videos"
    assert config.hydra["sweep"]["subdir"] == "${hydra.job.num}"


@pytest.mark.parametrize("value", ["???", "/path/to/your/project", "/replace/with/your/path"])
def test_a_placeholder_anywhere_is_named_with_other_problems(value):
    with pytest.raises(ConfigError) as info:
        parse_config({"data": {"data_dir": value, "view_names": ["a", "b"]},
                      "training": {"train_batch_size": 0}}, source="cfg.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid config cfg.yaml:"
    assert lines[1] == ("  fill in the values left open (as in a template): "
                        f"data.data_dir ({value!r})")
    assert lines[2] == "  training.train_batch_size: must be >= 1 (got 0)"


def test_a_single_view_lightning_pose_config_is_one_line():
    for csv_file in ("CollectedData.csv", ["CollectedData.csv"]):
        with pytest.raises(ConfigError) as info:
            parse_config({"data": {"csv_file": csv_file}}, source="cfg.yaml")
        message = str(info.value)
        assert len(message.splitlines()) == 1
        assert message.startswith("invalid config cfg.yaml: a single-view Lightning Pose config")
        assert "data.view_names" in message


# ----------------------------------------------------------------------------- ranges

#: LP's shipped multi-view configs; the others are single-view (one label CSV, no view names)
_MULTIVIEW = {"config_default_multiview.yaml", "config_mirror-mouse-example_split.yaml"}


def test_every_shipped_lightning_pose_config_is_in_range_or_single_view(shared_data):
    """The ranges accept every value Lightning Pose ships (its multi-view configs load
    unchanged); its single-view configs are one line saying so."""
    paths = sorted((shared_data / "lightning-pose-configs").glob("*.yaml"))
    assert len(paths) >= 5 and _MULTIVIEW <= {p.name for p in paths}
    for path in paths:
        if path.name in _MULTIVIEW:
            load_config(path, FILLED)
            continue
        with pytest.raises(ConfigError) as info:
            load_config(path, FILLED)
        assert len(str(info.value).splitlines()) == 1
        assert "a single-view Lightning Pose config" in str(info.value)


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("training.max_epochs", -1, "must be >= 1"),
    ("training.max_epochs", 0, "must be >= 1"),
    ("training.min_epochs", -5, "must be >= 0"),
    ("training.train_batch_size", 0, "must be >= 1"),
    ("training.val_batch_size", 0, "must be >= 1"),
    ("training.test_batch_size", -2, "must be >= 1"),
    ("training.optimizer_params.learning_rate", -0.001, "must be > 0"),
    ("training.optimizer_params.learning_rate", 0.0, "must be > 0"),
    ("training.optimizer_params.learning_rate", float("nan"), "must be a finite number"),
    ("training.optimizer_params.weight_decay", -1.0, "must be >= 0"),
    ("training.num_workers", -1, "must be >= 0"),
    ("training.num_gpus", -1, "must be >= 0"),
    ("training.num_nodes", 0, "must be >= 1"),
    ("training.max_steps", 0, "must be >= 1"),
    ("training.min_steps", -1, "must be >= 0"),
    ("training.unfreezing_epoch", -1, "must be >= 0"),
    ("training.log_every_n_steps", 0, "must be >= 1"),
    ("training.check_val_every_n_epoch", 0, "must be >= 1"),
    ("training.accumulate_grad_batches", 0, "must be >= 1"),
    ("training.early_stop_patience", -1, "must be >= 0"),
    ("training.rng_seed_data_pt", -1, "must be >= 0"),
    ("training.rng_seed_model_pt", 2**32, "must be <= 4294967295"),
    ("training.train_prob", 0.0, "must be > 0"),
    ("training.val_prob", -0.1, "must be >= 0"),
    ("training.train_frames", 0, "must be > 0"),
    ("training.heatmap_sigma", 0.0, "must be > 0"),
    ("training.heatmap_sigma", float("inf"), "must be a finite number"),
    ("training.limit_train_batches", 0, "a number of batches (an int >= 1) or a fraction"),
    ("training.val_check_interval", 1.5, "a number of batches (an int >= 1) or a fraction"),
    ("training.precision", "17", "must be one of 64, 32, 16"),
    ("training.lr_scheduler_params.multisteplr.gamma", 0.0, "must be > 0"),
    ("training.lr_scheduler_params.multisteplr.milestones", [10, -5], "must be >= 0"),
    ("callbacks.anneal_weight.increase_factor", -0.01, "must be >= 0"),
    ("callbacks.anneal_weight.freeze_until_epoch", -1, "must be >= 0"),
    ("eval.confidence_thresh_for_vid", 1.5, "must be <= 1"),
    ("eval.num_labeled_frame_plots", -1, "must be >= 0"),
])
def test_out_of_range_values_are_one_line_naming_key_rule_and_value(key, value, rule):
    text = yaml.safe_dump(value, default_flow_style=True).splitlines()[0]
    raw = apply_overrides({}, [f"{key}={text}"])
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="cfg.yaml")
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"invalid config cfg.yaml: {key}")
    assert rule in message


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("training.max_epochs", None, None),  # Lightning's default
    ("training.max_epochs", 1, 1),
    ("training.num_workers", 0, 0),
    ("training.limit_train_batches", 0.25, 0.25),
    ("training.limit_train_batches", 3, 3),
    ("training.val_check_interval", 1.0, 1.0),
    ("training.precision", 16, "16"),  # YAML reads it as a number
    ("training.precision", "bf16-mixed", "bf16-mixed"),
    ("training.ckpt_every_n_epochs", 0, 0),
    ("training.val_prob", None, None),
])
def test_in_range_values_are_kept(key, value, expected):
    section, name = key.split(".")
    config = parse_config({section: {name: value}})
    assert getattr(getattr(config, section), name) == expected


def test_several_problems_are_one_line_each():
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"train_batch_size": 0, "num_workers": -1}}, source="c.yaml")
    assert str(info.value).splitlines() == [
        "invalid config c.yaml:",
        "  training.train_batch_size: must be >= 1 (got 0)",
        "  training.num_workers: must be >= 0 (got -1)",
    ]


def test_yaml_errors_are_one_line_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  max_epochs: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and f"{bad} is not valid YAML: line " in message
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"training: \xff\xfe\x00")
    with pytest.raises(ConfigError, match="binary.yaml is not valid YAML"):
        load_config(binary)
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, ["training.max_epochs=[1"])
    assert len(str(info.value).splitlines()) == 1
    assert "--set 'training.max_epochs=[1': the value is not valid YAML" in str(info.value)
