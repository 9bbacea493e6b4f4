"""Checks of loss parameters against the project, shared by several losses."""

from __future__ import annotations

from mvcore import Context, LossParams, ParamError


def check_epsilon_length(params: LossParams, context: Context, per_view: bool = False) -> None:
    """A list ``epsilon`` has one value, one per body part (K) or, with ``per_view``, one per
    keypoint of every view (V * K); anything else fails at the first batch, so it is refused
    here with the lengths that would work."""
    if not isinstance(params.epsilon, list):
        return
    k = context.num_keypoints
    sizes = {1, k} | ({context.num_views * k} if per_view else set())
    if len(params.epsilon) not in sizes:
        allowed = f"1 or one per body part ({k})"
        if per_view:
            allowed += f" or one per keypoint of every view ({context.num_views * k})"
        raise ParamError("epsilon", f"has {len(params.epsilon)} values; give {allowed}")
