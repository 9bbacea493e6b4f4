"""docs/config.md documents every key of the config schema."""

from pathlib import Path

from pydantic import BaseModel

from mvcore.config.lightning_pose import PLUGIN_KEYS
from mvcore.config.schema import MvConfig

DOC = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text()
#: losses are documented per loss; lightning_pose is set by the loader, not written by users
UNDOCUMENTED_SECTIONS = {"dali", "hydra", "config_dir", "losses", "lightning_pose"}


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_is_in_the_reference():
    missing = []
    for key in _keys(MvConfig):
        if key.split(".")[0] in UNDOCUMENTED_SECTIONS:
            continue
        section, _, rest = key.rpartition(".")
        if f"`{key}`" not in DOC and f"{rest}`" not in DOC:
            missing.append(key)
    assert not missing, f"docs/config.md lacks: {missing}"


def test_lightning_pose_component_keys_are_in_the_reference():
    missing = [key for key in PLUGIN_KEYS if f"`{key}`" not in DOC]
    assert not missing, f"docs/config.md lacks the Lightning Pose keys {missing}"
