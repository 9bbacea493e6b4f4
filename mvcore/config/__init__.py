"""YAML config: pydantic models (pass 1) and plugin-parameter validation (pass 2)."""

from mvcore.config.load import apply_overrides, load_config, load_yaml, validate_components
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
    "load_config",
    "load_yaml",
    "validate_components",
]
