"""What losses, augmenters and backbones have in common: how they are declared and built.

Every component is built the same way, ``Component(params, context)``:

- ``params``: an instance of the component's ``Params`` model (a ``ComponentParams``
  subclass), validated from the config section of that component. Options are declared once,
  there, and read where they are used (``self.params.sigma``); unknown keys are errors.
- ``context``: a ``mvcore.Context`` (views, keypoints, sizes, calibration, seed, the training
  labels), never the whole config.

Before building, the core calls ``validate_context(params, context)``, also during
``mvcore config check``: a component raises ``mvcore.ParamError(field, message)`` when a
parameter does not fit the project, and the user sees the key path they wrote.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Component", "ComponentParams"]


class ComponentParams(BaseModel):
    """Base of every ``Params`` model: unknown keys are rejected, so a typo is an error.

    ``lightning_pose_keys`` maps Lightning Pose config keys this component reads to its field
    names, e.g. ``{"training.patch_mask": "patch_mask"}``. A Lightning Pose config sets such an
    option in Lightning Pose's place; mvcore's compatibility step copies the value into these
    params (a value given in both places must agree), and errors name the key the user wrote.
    """

    model_config = ConfigDict(extra="forbid")

    lightning_pose_keys: ClassVar[dict[str, str]] = {}


class Component:
    """Mixin of the three component base classes (``Loss``, ``Augmenter``, ``Backbone``)."""

    Params: ClassVar[type[ComponentParams]] = ComponentParams

    def _take(self, params: Any, context: Any) -> None:
        """Keep the validated ``params`` (an instance of ``Params``) and the ``context``."""
        if not isinstance(params, self.Params):
            cls, model = type(self).__name__, self.Params.__qualname__
            raise TypeError(
                f"{cls} takes its validated params, an instance of {model} (got "
                f"{type(params).__name__}): build it as {cls}({model}(...), context)")
        self.params = params
        self.context = context

    @classmethod
    def validate_context(cls, params: Any, context: Any) -> None:
        """Check ``params`` against the project; raise ``mvcore.ParamError(field, message)``.

        Runs before the component is built and in ``mvcore config check``. Check meaning, not
        shape (pydantic did that): keypoint indices in range, views that exist, enough views.
        The default accepts everything."""
