"""YAML config: loading, Lightning Pose compatibility and the pydantic shape check (pass 1).

Pass 2, the config against the installed plugins and the project, is ``mvcore.build``.
"""

from mvcore.config.load import apply_overrides, dump_config, load_config, load_yaml, parse_config
from mvcore.config.schema import (
    CallbacksConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    MvConfig,
    TrainingConfig,
)

__all__ = [
    "CallbacksConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "MvConfig",
    "TrainingConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "load_yaml",
    "parse_config",
]
