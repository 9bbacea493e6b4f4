"""Property tests of the config reader: any generated config (dicts of known and unknown keys
with values of every type), any mutated YAML file and any ``--set`` override gives a config or
a ``ConfigError`` naming the file, one line per problem - never another exception.

Hypothesis runs derandomized with a bounded number of examples (reproducible and fast).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mvcore.config import load_config
from mvcore.config.lightning_pose import PLUGIN_KEYS
from mvcore.config.load import apply_overrides, dump_config, parse_config
from mvcore.config.schema import MvConfig
from mvcore.errors import ConfigError

SETTINGS = settings(derandomize=True, max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FOLDER = Path(tempfile.mkdtemp(prefix="mvcore-config-"))


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        keys.append(f"{prefix}{name}")
    return keys


KEYS = sorted(set(_keys(MvConfig)) | set(PLUGIN_KEYS)
              | {"training.max_epochs", "losses.pca_multiview.components_to_keep",
                 "training.dropout_rate", "trainng.max_epochs", "data.view_names.0"})
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["${data.data_dir}", "${nope.key}", "${training}", "${now:%H}", "16",
                     "16-mixed", "dlc", "none", "Adam", "multisteplr", "mse", "cam0"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _check(message: str, source: str) -> None:
    """One line per problem, the first naming the config file."""
    lines = message.splitlines()
    assert lines and source in lines[0], message
    assert all(line.strip() for line in lines), message
    if len(lines) > 1:
        assert lines[0].endswith(":") and all(line.startswith("  ") for line in lines[1:])


@SETTINGS
@given(settings_=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=6))
def test_any_generated_config_parses_or_is_a_config_error_per_line(settings_):
    raw: dict[str, Any] = {}
    for key, value in settings_:
        _set(raw, key, value)
    try:
        config = parse_config(raw, source="cfg.yaml")
    except ConfigError as exc:
        _check(str(exc), "cfg.yaml")
        return
    assert isinstance(config, MvConfig)
    again = parse_config(dump_config(config))  # what a run saves reads back the same
    assert dump_config(again) == dump_config(config)


_DEFAULT_YAML = yaml.safe_dump(dump_config(parse_config({
    "data": {"view_names": ["cam0", "cam1"], "csv_file": ["a.csv", "b.csv"], "video_dir": "v",
             "image_resize_dims": {"height": 128, "width": 128}},
    "training": {"patch_mask": {"final_ratio": 0.5}},
    "losses": {"pca_multiview": {"log_weight": 1.0}},
    "eval": {"test_videos_directory": "${data.video_dir}"},
})), sort_keys=False)


@st.composite
def _mutated_yaml(draw: st.DrawFn) -> bytes:
    lines = _DEFAULT_YAML.splitlines()
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "delete", "indent", "junk", "repeat"]))
        if op == "value" and ":" in lines[i]:
            value = draw(st.one_of(
                st.sampled_from(["-1", "0", "1e400", ".nan", "-.inf", "[", "{a: 1}", "null",
                                 "yes", "'${training.max_epochs}'", "!!python/object:os.system",
                                 "&a [*a]", "*undefined", "|", "0x10", "1_000", '"\\x00"']),
                st.text(max_size=6)))
            lines[i] = lines[i].split(":")[0] + ": " + value
        elif op == "delete":
            del lines[i]
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "\t", "    "])) + lines[i]
        elif op == "junk":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=3)) + lines[i][at:]
        elif op == "repeat":
            lines.insert(i, lines[i])
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@SETTINGS
@given(data=_mutated_yaml())
def test_any_mutated_yaml_config_loads_or_is_a_config_error_naming_the_file(data):
    path = FOLDER / "config.yaml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _check(str(exc), str(path))
        return
    assert isinstance(config, MvConfig) and config.config_dir == str(FOLDER.resolve())


@SETTINGS
@given(overrides=st.lists(st.one_of(
    st.tuples(st.sampled_from(KEYS), st.text(max_size=8)).map("=".join),
    st.text(max_size=12)), max_size=3))
def test_any_override_applies_or_is_one_line(overrides):
    try:
        raw = apply_overrides({"training": {"max_epochs": 5}}, overrides)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith("--set "), str(exc)
        return
    try:
        parse_config(raw, source="cfg.yaml")
    except ConfigError as exc:
        _check(str(exc), "cfg.yaml")


@SETTINGS
@given(epochs=st.integers(1, 10**6), batch=st.integers(1, 4096), workers=st.integers(0, 64),
       rate=st.floats(1e-12, 10.0), fraction=st.floats(0.0, 1.0, exclude_min=True))
def test_values_in_range_are_kept_exactly(epochs, batch, workers, rate, fraction):
    config = parse_config({"training": {
        "max_epochs": epochs, "train_batch_size": batch, "num_workers": workers,
        "optimizer_params": {"learning_rate": rate}, "limit_train_batches": fraction,
        "train_prob": fraction, "val_prob": 0.0}})
    training = config.training
    assert (training.max_epochs, training.train_batch_size, training.num_workers) == (
        epochs, batch, workers)
    assert training.optimizer_params.learning_rate == rate
    assert training.limit_train_batches == fraction and math.isfinite(fraction)
