"""PCA losses: penalise predictions that leave a low-dimensional subspace of the training labels.

``pca_multiview``: each row is one body part in one frame seen in several views, columns
``[v0x, v0y, v1x, v1y, ...]``. A 3D point seen by V (near-affine) cameras spans 3 dimensions,
so predictions that are inconsistent across views leave the 3-dimensional subspace.

``pca_singleview``: each row is the pose of one frame in one view, columns
``[x0, y0, x1, y1, ...]`` over the selected keypoints; unlikely body shapes leave the subspace.
On a multi-view project (V > 1) one PCA is fitted **per view** (each camera sees the body
through its own projection, so pooling views would spend components on the differences
between cameras); the V fits run as one batched computation and each has its own number of
components and its own empirical epsilon. With V = 1 it is Lightning Pose's singleview PCA.

Both losses are fitted at construction on ``context.train_keypoints()``
``(n_train, V, K, 2)`` in FRAME pixels, the space of ``keypoints_pred`` (Lightning Pose fits on
resized model-input pixels, bug B4). The loss per 2D point is the L2 norm of
``x - x_hat`` (``x_hat`` the projection onto the kept components), minus epsilon, rectified,
averaged over the valid points. Missing points (NaN labels or predictions) are skipped: the
PCA is NaN-aware and a partly missing row is fitted on its present points.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, StrictFloat, StrictInt
from torch import nn

from mvcore import ConfigError, Context, LogList, Loss, LossParams, ParamError, Stage

PCAMode = Literal["singleview", "multiview"]
#: degrees of freedom of a 3D point: the rank of the multiview subspace under affine cameras
MULTIVIEW_COMPONENTS = 3
#: ridge of the least-squares projection of rows with missing points (components are unit norm)
_RIDGE = 1e-6


def choose_components(
    explained_variance_ratio: torch.Tensor,
    components_to_keep: int | float,
    available: torch.Tensor | None = None,
) -> torch.Tensor:
    """Number of components to keep per group (Lightning Pose's ``ComponentChooser``).

    ``explained_variance_ratio (G, D)`` in descending order; ``available (G,)`` how many
    components each group really has (default D). An ``int`` keeps that many (1 <= n <= every
    group's available count, else ValueError); a ``float`` in [0, 1] keeps the smallest k whose
    cumulative ratio reaches it, exactly ``1.0`` keeping all available; anything else (``bool``
    included) is a TypeError. Returns ``(G,)`` int64.
    """
    evr = explained_variance_ratio
    groups, dims = evr.shape
    if available is None:
        available = torch.full((groups,), dims, dtype=torch.long, device=evr.device)
    if isinstance(components_to_keep, bool) or not isinstance(components_to_keep, Real):
        raise TypeError(
            f"components_to_keep must be an int or a float, got {components_to_keep!r}"
        )
    if isinstance(components_to_keep, Integral):
        n = int(components_to_keep)
        limit = int(available.min())
        if not 1 <= n <= limit:
            raise ValueError(
                f"components_to_keep={n} must be between 1 and the number of PCA dimensions "
                f"({limit})"
            )
        return torch.full((groups,), n, dtype=torch.long, device=evr.device)
    threshold = float(components_to_keep)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"components_to_keep as a float is a fraction of explained variance in [0, 1], "
            f"got {threshold}"
        )
    if threshold == 1.0:
        return available.clone()
    crossed = (evr.cumsum(-1) < threshold).sum(-1) + 1
    return torch.minimum(crossed, available)


def nan_pca(data: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """NaN-aware PCA of ``(G, n, D)`` data, one fit per group, batched.

    As Lightning Pose's ``NaNPCA``: column means over the observed values and the
    pairwise-complete covariance (``np.ma.cov``: products of centred values over the rows where
    both columns are observed, divided by that count minus one), eigen-decomposed with
    ``eigh``, sorted by decreasing eigenvalue, negative eigenvalues clipped to 0, signs fixed so
    that each component's largest-magnitude entry is positive (sklearn's ``svd_flip``).
    Columns with fewer than two observations are "unobserved": mean 0, no covariance.

    Returns ``mean (G, D)``, ``eigenvalues (G, D)``, ``components (G, D, D)`` (rows) and
    ``observed (G, D)`` bool, all float64 except the mask.
    """
    x = data.to(torch.float64)
    finite = torch.isfinite(x)
    count = finite.sum(1)  # (G, D)
    observed = count >= 2
    mask = finite & observed[:, None, :]
    zeros = torch.zeros_like(x)
    mean = torch.where(mask, x, zeros).sum(1) / count.clamp(min=1)
    mean = torch.where(observed, mean, torch.zeros_like(mean))
    centred = torch.where(mask, x - mean[:, None, :], zeros)
    m = mask.to(x.dtype)
    pair_count = m.transpose(1, 2) @ m  # (G, D, D)
    cov = centred.transpose(1, 2) @ centred / (pair_count - 1).clamp(min=1)
    cov = torch.where(pair_count >= 2, cov, torch.zeros_like(cov))
    evals, evecs = torch.linalg.eigh(cov)  # ascending, eigenvectors in columns
    evals = evals.flip(-1).clamp(min=0)
    components = evecs.flip(-1).transpose(-1, -2)
    largest = components.abs().argmax(-1, keepdim=True)
    sign = torch.sign(components.gather(-1, largest))
    components = components * torch.where(sign == 0, torch.ones_like(sign), sign)
    return mean, evals, components, observed


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the last axis with a finite (zero) gradient at 0."""
    sq = (x * x).sum(-1)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def resolve_mirrored_column_matches(
    matches: list[int] | list[list[int]] | None, num_views: int, num_keypoints: int
) -> list[list[int]]:
    """One equal-length list of flat keypoint indices (into the ``N = V * K`` keypoints) per
    view.

    A flat list of per-view indices is expanded to ``[v * K + i for i in matches]`` for every
    view (integer arithmetic; LP's own expansion divides, bug B6). None on a multi-view project
    means "every keypoint, matched with itself in every view".
    """
    total = num_views * num_keypoints
    if matches is None or len(matches) == 0:
        if num_views < 2:
            raise ValueError(
                "pca_multiview needs mirrored_column_matches on a single-view project: one list "
                "of keypoint indices per (mirrored) view, e.g. [[0, 1, 2], [8, 9, 10]]"
            )
        return [[v * num_keypoints + k for k in range(num_keypoints)] for v in range(num_views)]
    if all(isinstance(m, Integral) for m in matches):
        if num_views < 2:
            raise ValueError(
                "a flat mirrored_column_matches list is expanded over the views of a multi-view "
                "project; this project has one view, so give one index list per mirrored view"
            )
        flat = [int(m) for m in matches]
        bad = [i for i in flat if not 0 <= i < num_keypoints]
        if bad:
            raise ValueError(
                f"mirrored_column_matches indices {bad} are outside the {num_keypoints} "
                "keypoints of a view"
            )
        return [[v * num_keypoints + i for i in flat] for v in range(num_views)]
    lists = [[int(i) for i in m] for m in matches]
    if len(lists) < 2:
        raise ValueError("mirrored_column_matches needs at least two views (index lists)")
    if len({len(m) for m in lists}) != 1 or not lists[0]:
        raise ValueError(
            "mirrored_column_matches lists must be non-empty and of equal length, got lengths "
            f"{[len(m) for m in lists]}"
        )
    bad = [i for m in lists for i in m if not 0 <= i < total]
    if bad:
        raise ValueError(f"mirrored_column_matches indices {bad} are outside [0, {total})")
    return lists


class KeypointPCA(nn.Module):
    """NaN-aware PCA of keypoints in one of two layouts, with its fitted parameters as buffers.

    ``format`` turns keypoints ``(B, 2N)`` (or ``(B, V, K, 2)``) into PCA rows ``(R, G, D)``
    (G groups fitted separately: the V views for singleview, 1 for multiview); ``fit`` fits on
    training keypoints ``(n, V, K, 2)``; ``reprojection_error`` gives one error per 2D point.

    Buffers after ``fit``: ``mean (G, D)``, ``kept_eigenvectors (G, k_max, D)`` and
    ``discarded_eigenvectors (G, D - k_min, D)`` (rows of a group beyond its own count are
    zero), ``explained_variance_ratio (G, D)``, ``n_components (G,)``, ``observed (G, D)``
    (columns with >= 2 training values; the others are ignored, e.g. a keypoint never labelled
    in one view).
    """

    def __init__(
        self,
        mode: PCAMode,
        num_views: int,
        num_keypoints: int,
        components_to_keep: int | float = 0.95,
        mirrored_column_matches: list[int] | list[list[int]] | None = None,
        columns_for_singleview_pca: list[int] | None = None,
        centering_method: Literal["mean", "median"] | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("singleview", "multiview"):
            raise ValueError(f"mode must be 'singleview' or 'multiview', got {mode!r}")
        if centering_method not in (None, "mean", "median"):
            raise ValueError(
                f"centering_method must be None, 'mean' or 'median', got {centering_method!r}"
            )
        if mode == "multiview" and centering_method is not None:
            raise ValueError("centering_method applies to pca_singleview only")
        self.mode = mode
        self.num_views = int(num_views)
        self.num_keypoints = int(num_keypoints)
        self.components_to_keep = components_to_keep
        self.centering_method = centering_method
        if mode == "multiview":
            matches = resolve_mirrored_column_matches(
                mirrored_column_matches, self.num_views, self.num_keypoints
            )
            self.register_buffer("matches", torch.tensor(matches), persistent=False)
        else:
            columns = (
                list(range(self.num_keypoints))
                if columns_for_singleview_pca is None
                else [int(c) for c in columns_for_singleview_pca]
            )
            bad = [c for c in columns if not 0 <= c < self.num_keypoints]
            if bad or not columns:
                raise ValueError(
                    f"columns_for_singleview_pca {columns} must be non-empty indices into the "
                    f"{self.num_keypoints} keypoints of a view"
                )
            self.register_buffer("columns", torch.tensor(columns), persistent=False)
        empty = torch.zeros(0)
        for name in (
            "mean",
            "kept_eigenvectors",
            "discarded_eigenvectors",
            "explained_variance_ratio",
        ):
            self.register_buffer(name, empty.clone())
        self.register_buffer("n_components", torch.zeros(0, dtype=torch.long))
        self.register_buffer("observed", torch.zeros(0, dtype=torch.bool))

    @property
    def num_groups(self) -> int:
        return self.num_views if self.mode == "singleview" else 1

    def format(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, 2N)`` or ``(B, V, K, 2)`` -> PCA rows ``(R, G, D)``.

        Singleview: ``R = B``, ``G = V``, ``D = 2 * len(columns)`` (optionally centred per frame
        and view by the NaN-aware mean / median of the selected keypoints). Multiview:
        ``R = B * M`` (frame-major, then matched body part), ``G = 1``, ``D = 2 * V_m``.
        """
        batch = keypoints.shape[0]
        points = keypoints.reshape(batch, self.num_views * self.num_keypoints, 2)
        if self.mode == "multiview":
            matched = points[:, self.matches]  # (B, V_m, M, 2)
            return matched.transpose(1, 2).reshape(-1, 1, 2 * self.matches.shape[0])
        points = points.reshape(batch, self.num_views, self.num_keypoints, 2)[:, :, self.columns]
        if self.centering_method == "mean":
            points = points - points.nanmean(dim=2, keepdim=True)
        elif self.centering_method == "median":
            points = points - points.nanquantile(0.5, dim=2, keepdim=True)
        return points.reshape(batch, self.num_views, -1)

    @torch.no_grad()
    def fit(self, keypoints: np.ndarray | torch.Tensor) -> KeypointPCA:
        """Fit on training keypoints ``(n, V, K, 2)`` (NaN = unlabelled)."""
        x = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
        expected = (self.num_views, self.num_keypoints, 2)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"training keypoints must be (n, {expected}), got {tuple(x.shape)}")
        data = self.format(x).transpose(0, 1)  # (G, R, D)
        mean, evals, components, observed = nan_pca(data)
        dims = observed.sum(-1)  # (G,)
        rows = (torch.isfinite(data) & observed[:, None]).any(-1).sum(-1)
        for g in torch.nonzero(rows < dims).flatten().tolist():
            where = f" (view {g})" if self.num_groups > 1 else ""
            raise ValueError(
                f"cannot fit PCA{where} with {int(rows[g])} samples < {int(dims[g])} "
                "observation dimensions; label more frames or use fewer keypoints"
            )
        total = evals.sum(-1, keepdim=True)
        evr = evals / total.clamp(min=torch.finfo(evals.dtype).tiny)
        n_keep = choose_components(evr, self.components_to_keep, available=dims)
        order = torch.arange(evals.shape[-1])
        kept = (order < n_keep[:, None])[..., None]  # (G, D, 1)
        zeros = torch.zeros_like(components)
        k_min, k_max = int(n_keep.min()), int(n_keep.max())
        self.mean = mean.float()
        self.kept_eigenvectors = torch.where(kept, components, zeros)[:, :k_max].float()
        self.discarded_eigenvectors = torch.where(kept, zeros, components)[:, k_min:].float()
        self.explained_variance_ratio = evr.float()
        self.n_components = n_keep
        self.observed = observed
        return self

    def reprojection_error(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PCA rows ``(R, G, D)`` -> per-2D-point errors ``(R, G, D / 2)`` and their validity.

        A complete row is projected onto the kept components, ``x_hat = mu + (x - mu) W^T W``.
        A row with missing points (NaN) is projected by least squares on its present
        coordinates only (the coefficients that best explain what is there; a tiny ridge keeps
        it defined), and its points count only if more coordinates are present than components
        are kept (else the fit is exact and says nothing). Unobserved columns (never labelled in
        training) are ignored. Invalid entries are 0 with zero gradient.
        """
        if self.mean.numel() == 0:
            raise RuntimeError("KeypointPCA.reprojection_error called before fit")
        dtype = data.dtype if data.is_floating_point() else torch.float32
        rows, groups, dims = data.shape
        point_ok = torch.isfinite(data).reshape(rows, groups, -1, 2).all(-1)
        point_ok = point_ok & self.observed.reshape(groups, -1, 2).all(-1)  # (R, G, D / 2)
        present = point_ok.repeat_interleave(2, dim=-1)  # (R, G, D)
        centred = torch.where(present, data.to(dtype) - self.mean.to(dtype), 0.0)
        kept = self.kept_eigenvectors.to(dtype)  # (G, k, D), zero rows beyond a group's count
        projected = torch.einsum("rgd,gkd->rgk", centred, kept)
        complete = (present | ~self.observed).all(-1, keepdim=True)  # (R, G, 1)
        gram = torch.einsum("gkd,rgd,gjd->rgkj", kept, present.to(dtype), kept)
        eye = torch.eye(kept.shape[1], dtype=dtype, device=data.device)
        fitted = torch.linalg.solve(gram + _RIDGE * eye, projected.unsqueeze(-1)).squeeze(-1)
        coefficients = torch.where(complete, projected, fitted)
        residual = centred - torch.einsum("rgk,gkd->rgd", coefficients, kept)
        residual = torch.where(present, residual, 0.0)
        errors = _safe_norm(residual.reshape(rows, groups, -1, 2))
        enough = present.sum(-1) > self.n_components  # (R, G)
        return errors, point_ok & (enough | complete.squeeze(-1))[..., None]


class PCAParams(LossParams):
    """What both PCA losses take (``losses.pca_singleview`` / ``losses.pca_multiview``)."""

    components_to_keep: StrictInt | StrictFloat = 0.95
    empirical_epsilon_percentile: float = Field(99.0, ge=0.0, le=100.0)
    #: fixed epsilon in pixels; None = empirical (percentile of training errors x multiplier)
    epsilon: float | None = None
    empirical_epsilon_multiplier: float = Field(1.0, ge=0.0)


class PCASingleviewParams(PCAParams):
    """``losses.pca_singleview``; the column list may also be given where Lightning Pose reads
    it, ``data.columns_for_singleview_pca``."""

    lightning_pose_keys: ClassVar[dict[str, str]] = {
        "data.columns_for_singleview_pca": "columns_for_singleview_pca"}

    #: per-view keypoint indices to use; None = all
    columns_for_singleview_pca: list[int] | None = None
    #: centre each pose per frame and view before the PCA
    centering_method: Literal["mean", "median"] | None = None


class PCAMultiviewParams(PCAParams):
    """``losses.pca_multiview``: 3 components (a 3D point's degrees of freedom) by default; the
    matches may also be given where Lightning Pose reads them, ``data.mirrored_column_matches``.
    """

    lightning_pose_keys: ClassVar[dict[str, str]] = {
        "data.mirrored_column_matches": "mirrored_column_matches"}

    components_to_keep: StrictInt | StrictFloat = MULTIVIEW_COMPONENTS
    #: one list of keypoint indices per view, or one list for every view; None = every
    #: keypoint matched with itself in every view
    mirrored_column_matches: list[int] | list[list[int]] | None = None


class PCALoss(Loss):
    """Epsilon-insensitive PCA reprojection error of ``keypoints_pred (B, 2N)`` (frame pixels).

    Built as every loss, ``Loss(params, context)``; the PCA is fitted on
    ``context.train_keypoints()`` (see the module docstring for the layouts). Epsilon:
    ``epsilon`` if given, else the ``empirical_epsilon_percentile`` of the training errors (per
    2D point, NaN ignored) times ``empirical_epsilon_multiplier``; one value per group (per view
    for singleview). Missing (NaN) predicted points are left out of the mean; the rest of their
    row is projected by least squares on its present points (see
    ``KeypointPCA.reprojection_error``), as are training rows with missing labels.
    Unsupervised and annealed. Subclasses set ``mode`` and build the layout from their params.
    """

    Params = PCAParams
    params: PCAParams
    supervised = False
    mode: ClassVar[PCAMode] = "singleview"
    #: the parameter that chooses which keypoints enter the PCA (named in errors)
    layout_field: ClassVar[str] = ""

    @classmethod
    def _layout_options(cls, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _layout(cls, params: PCAParams, context: Context) -> KeypointPCA:
        """The (unfitted) PCA layout; raises ParamError naming the parameter that is wrong."""
        try:
            return KeypointPCA(cls.mode, context.num_views, context.num_keypoints,
                               components_to_keep=params.components_to_keep,
                               **cls._layout_options(params))
        except ValueError as exc:
            raise ParamError(cls.layout_field, str(exc)) from None

    @classmethod
    def validate_context(cls, params: PCAParams, context: Context) -> None:
        """Indices inside the project's views and keypoints; ``components_to_keep`` an int
        from 1 to the PCA's dimensions or a float fraction in [0, 1] (checked here so that
        ``mvcore config check`` catches it, not the fit at the start of training)."""
        layout = cls._layout(params, context)
        if cls.mode == "multiview":
            dims = 2 * layout.matches.shape[0]
            per = f"x and y in each of {layout.matches.shape[0]} views per body part"
        else:
            dims = 2 * layout.columns.numel()
            per = f"x and y of {layout.columns.numel()} keypoints per view"
        keep = params.components_to_keep
        if isinstance(keep, int) and not 1 <= keep <= dims:
            raise ParamError(
                "components_to_keep",
                f"{keep} components but the PCA has {dims} dimensions ({per}); give an int "
                f"from 1 to {dims}, or a float in [0, 1] (a fraction of explained variance)")
        if isinstance(keep, float) and not 0.0 <= keep <= 1.0:
            raise ParamError(
                "components_to_keep",
                f"{keep!r} as a float is a fraction of explained variance and must be in "
                f"[0, 1]; for a number of components write an int from 1 to {dims}")

    def __init__(self, params: PCAParams, context: Context) -> None:
        super().__init__(params, context)
        train = context.train_keypoints()
        self.pca = self._layout(params, context)
        try:
            self.pca.fit(train)
        except ValueError as exc:
            if "components_to_keep" in str(exc):
                raise ParamError("components_to_keep", str(exc)) from None
            raise ConfigError(f"{self.loss_name}: {exc}") from None
        if self.mode == "multiview" and (self.pca.n_components != MULTIVIEW_COMPONENTS).any():
            warnings.warn(
                f"pca_multiview keeps {self.pca.n_components.tolist()} components; a 3D point "
                f"seen by several cameras has {MULTIVIEW_COMPONENTS} degrees of freedom, so "
                f"components_to_keep={MULTIVIEW_COMPONENTS} is the usual choice",
                UserWarning,
                stacklevel=2,
            )
        dims = self.pca.observed.sum(-1)
        if (self.pca.n_components >= dims).any():
            warnings.warn(
                f"{self.loss_name} keeps every PCA dimension of some group "
                f"({self.pca.n_components.tolist()} of {dims.tolist()}); the loss is then zero",
                UserWarning,
                stacklevel=2,
            )
        if params.epsilon is None:
            errors, valid = self.pca.reprojection_error(self.pca.format(torch.as_tensor(train)))
            errors = torch.where(valid, errors, torch.full_like(errors, float("nan")))
            per_group = errors.transpose(0, 1).reshape(self.pca.num_groups, -1)
            quantile = params.empirical_epsilon_percentile / 100.0
            eps = torch.nanquantile(per_group, quantile, dim=-1)
            eps = torch.nan_to_num(eps, nan=0.0) * params.empirical_epsilon_multiplier
        else:
            eps = torch.full((self.pca.num_groups,), float(params.epsilon), dtype=torch.float64)
        self.epsilon = eps.float()

    def remove_nans(self, **kwargs: Any) -> Any:
        """Missing points are handled in ``compute_loss`` (it returns a validity mask)."""
        return kwargs

    def compute_loss(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2N)`` predictions -> per-2D-point errors ``(R, G, P)`` and validity."""
        return self.pca.reprojection_error(self.pca.format(predictions))

    def rectify_epsilon(self, loss: torch.Tensor) -> torch.Tensor:
        """``relu(error - epsilon)`` with one epsilon per group (``(R, G, P)`` errors)."""
        return torch.relu(loss - self.epsilon.to(loss.dtype)[:, None])

    def forward(
        self, *, keypoints_pred: torch.Tensor, stage: Stage | None = None
    ) -> tuple[torch.Tensor, LogList]:
        errors, valid = self.compute_loss(keypoints_pred)
        scalar = self.reduce_loss(self.rectify_epsilon(errors)[valid], method="mean")
        return self.weight * scalar, self.log_loss(scalar, stage)

    @torch.no_grad()
    def keypoint_errors(self, keypoints_pred: torch.Tensor) -> torch.Tensor:
        """PCA reprojection error per keypoint ``(n, N)`` (NaN for keypoints outside the PCA
        or without a valid prediction) - the post-training PCA error metric."""
        errors, valid = self.compute_loss(keypoints_pred)
        errors = torch.where(valid, errors, float("nan"))
        n = keypoints_pred.shape[0]
        num_k = self.pca.num_keypoints
        out = errors.new_full((n, self.pca.num_views * num_k), float("nan"))
        if self.pca.mode == "multiview":
            matches = self.pca.matches  # (V_m, M) indices into the N keypoints
            out[:, matches.T] = errors.reshape(n, matches.shape[1], matches.shape[0])
        else:
            views = torch.arange(self.pca.num_views, device=errors.device)[:, None]
            out[:, views * num_k + self.pca.columns[None, :].to(errors.device)] = errors
        return out

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, components={self.pca.n_components.tolist()}, "
            f"epsilon={[round(e, 3) for e in self.epsilon.tolist()]}"
        )


class PCASingleviewLoss(PCALoss):
    """``pca_singleview``: one PCA per view of the selected keypoints' coordinates."""

    loss_name = "pca_singleview"
    Params = PCASingleviewParams
    params: PCASingleviewParams
    mode = "singleview"
    layout_field = "columns_for_singleview_pca"

    @classmethod
    def _layout_options(cls, params: PCASingleviewParams) -> dict[str, Any]:
        return {"columns_for_singleview_pca": params.columns_for_singleview_pca,
                "centering_method": params.centering_method}


class PCAMultiviewLoss(PCALoss):
    """``pca_multiview``: one PCA of each body part's coordinates in all (matched) views; keeps
    3 components by default (an int or float is honoured, with a warning if it is not 3)."""

    loss_name = "pca_multiview"
    Params = PCAMultiviewParams
    params: PCAMultiviewParams
    mode = "multiview"
    layout_field = "mirrored_column_matches"

    @classmethod
    def _layout_options(cls, params: PCAMultiviewParams) -> dict[str, Any]:
        return {"mirrored_column_matches": params.mirrored_column_matches}
