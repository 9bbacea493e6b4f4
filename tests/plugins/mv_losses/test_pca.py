"""pca_singleview / pca_multiview and the NaN-aware KeypointPCA behind them."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mv_losses.pca import (
    KeypointPCA,
    PCALoss,
    PCAMultiviewLoss,
    PCASingleviewLoss,
    choose_components,
    nan_pca,
    resolve_mirrored_column_matches,
)
from pydantic import ValidationError
from shared_data import SHARED_DATA as DATA

from mvcore import ConfigError, ParamError

NAN = float("nan")


def _low_rank(n: int, dims: int, rank: int, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """``(n, dims)`` rows in a random ``rank``-dimensional affine subspace (+ noise)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dims, dims)))[0][:rank]
    scales = np.linspace(50, 10, rank)[:, None]
    data = rng.normal(size=(n, rank)) @ (scales * basis) + rng.uniform(100, 300, size=dims)
    return data + noise * rng.normal(size=data.shape)


def _mirror_frames(rows: np.ndarray, parts: int) -> np.ndarray:
    """PCA rows ``(n * parts, 4)`` ``[v0x, v0y, v1x, v1y]`` -> training keypoints
    ``(n, 1, 2 * parts, 2)`` of a mirror project (view 0 = keypoints 0..parts-1)."""
    per_view = rows.reshape(-1, parts, 2, 2).transpose(0, 2, 1, 3)  # (n, view, part, xy)
    return per_view.reshape(-1, 1, 2 * parts, 2)


def _multiview_loss(context, train: np.ndarray, **params) -> PCAMultiviewLoss:
    """Multiview PCA of a 'mirror' project: one view with K keypoints, left half matched with
    the right half, fitted on ``train`` (the context's training labels)."""
    k = train.shape[2]
    matches = [list(range(k // 2)), list(range(k // 2, k))]
    params = PCAMultiviewLoss.Params(mirrored_column_matches=matches, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PCAMultiviewLoss(params, context(train))


# ----------------------------------------------------------------- the PCA itself


def test_nan_pca_matches_numpy_without_and_with_nans():
    data = _low_rank(200, 6, 6, noise=1.0)
    mean, evals, comps, observed = nan_pca(torch.tensor(data)[None])
    ref_vals, ref_vecs = np.linalg.eigh(np.cov(data, rowvar=False))
    assert np.allclose(mean[0].numpy(), data.mean(0))
    assert np.allclose(evals[0].numpy(), ref_vals[::-1])
    for i in range(6):  # same axes up to sign; sign: largest-magnitude entry positive
        assert abs(float(comps[0, i] @ torch.tensor(ref_vecs[:, ::-1][:, i]))) == pytest.approx(1)
        assert comps[0, i, comps[0, i].abs().argmax()] > 0
    holes = data.copy()
    rng = np.random.default_rng(1)
    holes[rng.random(holes.shape) < 0.2] = np.nan
    mean, evals, comps, observed = nan_pca(torch.tensor(holes)[None])
    masked = np.ma.masked_invalid(holes)
    assert np.allclose(mean[0].numpy(), masked.mean(0).data)
    cov = (comps[0].T * evals[0]) @ comps[0]
    ref = np.ma.cov(masked, rowvar=False).data
    ref_vals, ref_vecs = np.linalg.eigh(ref)
    clipped = (ref_vecs * np.clip(ref_vals, 0, None)) @ ref_vecs.T
    assert np.allclose(cov.numpy(), clipped)
    assert observed.all()


def test_choose_components_semantics():
    evr = torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05, 0, 0, 0, 0, 0]])
    assert choose_components(evr, 4).tolist() == [4]
    assert choose_components(evr, 1.0).tolist() == [10]
    assert choose_components(evr, 0.8).tolist() == [2]  # cumulative 0.8 reached at k = 2
    assert choose_components(evr, 0.85).tolist() == [3]
    assert choose_components(evr, 0.0).tolist() == [1]
    for bad in (11, 0, 1.04, -0.2):
        with pytest.raises(ValueError):
            choose_components(evr, bad)
    for bad in (True, "3", None):
        with pytest.raises(TypeError):
            choose_components(evr, bad)


def test_too_few_samples_is_an_error(context):
    train = np.random.default_rng(0).normal(size=(10, 1, 8, 2)) * 50 + 100
    with pytest.raises(
        ConfigError, match="pca_singleview: cannot fit PCA with 10 samples < 16 observation"
    ):
        PCASingleviewLoss(PCASingleviewLoss.Params(), context(train))


def test_mirrored_column_matches_resolution():
    assert resolve_mirrored_column_matches([0, 2], num_views=3, num_keypoints=4) == [
        [0, 2],
        [4, 6],
        [8, 10],
    ]  # integer arithmetic (LP's B6 divided)
    assert resolve_mirrored_column_matches(None, 2, 3) == [[0, 1, 2], [3, 4, 5]]
    assert resolve_mirrored_column_matches([[0, 1], [5, 4]], 1, 6) == [[0, 1], [5, 4]]
    with pytest.raises(ValueError, match="equal length"):
        resolve_mirrored_column_matches([[0, 1], [2]], 1, 6)
    with pytest.raises(ValueError, match="single-view project"):
        resolve_mirrored_column_matches(None, 1, 6)
    with pytest.raises(ValueError, match="outside"):
        resolve_mirrored_column_matches([[0, 1], [2, 6]], 1, 6)


def test_format_layouts_and_centering():
    keypoints = torch.arange(2 * 2 * 3 * 2, dtype=torch.float64).reshape(2, 12)  # B=2, V=2, K=3
    multi = KeypointPCA("multiview", 2, 3, mirrored_column_matches=None)
    rows = multi.format(keypoints)
    assert rows.shape == (6, 1, 4)  # frame-major, then body part; [v0x, v0y, v1x, v1y]
    assert rows[1, 0].tolist() == [2.0, 3.0, 8.0, 9.0]
    assert rows[3, 0].tolist() == [12.0, 13.0, 18.0, 19.0]
    single = KeypointPCA("singleview", 2, 3, columns_for_singleview_pca=[0, 2])
    assert single.format(keypoints)[0, 1].tolist() == [6.0, 7.0, 10.0, 11.0]
    points = torch.tensor([[0.0, 0.0, 1.0, 10.0, 5.0, 2.0]])  # one view, 3 keypoints
    mean = KeypointPCA("singleview", 1, 3, centering_method="mean").format(points)
    median = KeypointPCA("singleview", 1, 3, centering_method="median").format(points)
    assert torch.allclose(mean[0, 0], torch.tensor([-2.0, -4.0, -1.0, 6.0, 3.0, -2.0]))
    assert torch.allclose(median[0, 0], torch.tensor([-1.0, -2.0, 0.0, 8.0, 4.0, 0.0]))
    with pytest.raises(ValueError, match="pca_singleview only"):
        KeypointPCA("multiview", 2, 3, centering_method="mean")


# ----------------------------------------------------------------- the losses


def test_multiview_subspace_predictions_cost_nothing_and_off_subspace_known_value(context):
    """Rows exactly in a 3D subspace of R^4: in-subspace predictions give 0; moving a row
    along the discarded axis u by d gives errors d * |u_view| per view."""
    rows = _low_rank(300, 4, 3)  # (frame * part, [v0x, v0y, v1x, v1y])
    train = _mirror_frames(rows, 3)  # view 0 = keypoints 0-2, view 1 = keypoints 3-5
    loss = _multiview_loss(context, train, epsilon=0.0)
    assert loss.pca.n_components.tolist() == [3]
    preds = torch.tensor(train[:8].reshape(8, -1), dtype=torch.float32)
    weighted, logs = loss(keypoints_pred=preds, stage="train")
    assert float(logs[0]["value"]) < 1e-3
    assert logs[0]["name"] == "train_pca_multiview_loss"
    assert logs[1]["name"] == "pca_multiview_weight"
    u = loss.pca.discarded_eigenvectors[0, 0].double()  # (4,)
    moved = torch.tensor(train[:1], dtype=torch.float64).reshape(1, 6, 2).clone()
    moved[0, 0] += 5.0 * u[:2]  # part 0 in view 0
    moved[0, 3] += 5.0 * u[2:]  # part 0 in view 1
    _, logs = loss(keypoints_pred=moved.reshape(1, -1), stage="train")
    expected = 5.0 * (u[:2].norm() + u[2:].norm()) / 6  # 3 parts x 2 views, one row moved
    assert float(logs[0]["value"]) == pytest.approx(float(expected), rel=1e-4)
    assert logs[0]["value"].dtype == torch.float64


def test_empirical_epsilon_is_the_percentile_of_training_errors(context):
    rows = _low_rank(400, 4, 3, noise=2.0, seed=3)
    train = _mirror_frames(rows, 4)
    loss = _multiview_loss(
        context, train, empirical_epsilon_percentile=90.0, empirical_epsilon_multiplier=2.0
    )
    centred = rows - rows.mean(0)
    vals, vecs = np.linalg.eigh(np.cov(rows, rowvar=False))
    kept = vecs[:, ::-1][:, :3]
    residual = centred - centred @ kept @ kept.T
    errors = np.linalg.norm(residual.reshape(-1, 2, 2), axis=-1)
    assert float(loss.epsilon[0]) == pytest.approx(2.0 * np.percentile(errors, 90), rel=1e-4)
    fixed = _multiview_loss(context, train, epsilon=7.0)
    assert fixed.epsilon.tolist() == [7.0]


def test_multiview_warns_unless_three_components(context):
    train = _low_rank(400, 6, 6, noise=1.0).reshape(400, 1, 3, 2)
    params = PCAMultiviewLoss.Params(components_to_keep=2, mirrored_column_matches=[[0], [1], [2]])
    with pytest.warns(UserWarning, match="keeps \\[2\\] components"):
        PCAMultiviewLoss(params, context(train))
    assert PCAMultiviewLoss.Params().components_to_keep == 3
    assert PCASingleviewLoss.Params().components_to_keep == 0.95
    # a single-view project without matches: refused before building (validate_context, the
    # check `mvcore config check` runs) and by the constructor, naming the parameter
    with pytest.raises(ParamError, match="pca_multiview needs mirrored_column_matches") as info:
        PCAMultiviewLoss.validate_context(PCAMultiviewLoss.Params(), context(train))
    assert info.value.field == "mirrored_column_matches"
    assert info.value.message.startswith("pca_multiview needs mirrored_column_matches")
    with pytest.raises(ParamError, match="pca_multiview needs mirrored_column_matches"):
        PCAMultiviewLoss(PCAMultiviewLoss.Params(), context(train))


def test_singleview_per_view_pcas_on_a_multiview_project(context):
    """Each view has its own 2D pose subspace (rank 2 and 4): one PCA per view fits both
    exactly, with per-view component counts and epsilons."""
    view0 = _low_rank(60, 8, 2, seed=1).reshape(60, 4, 2)
    view1 = _low_rank(60, 8, 4, seed=2).reshape(60, 4, 2)
    train = np.stack([view0, view1], 1)  # (60, 2, 4, 2)
    ctx = context(train, view_names=["a", "b"], keypoint_names=["p", "q", "r", "s"])
    loss = PCASingleviewLoss(PCASingleviewLoss.Params(components_to_keep=0.999), ctx)
    assert loss.pca.n_components.tolist() == [2, 4]
    assert loss.epsilon.shape == (2,) and (loss.epsilon < 1e-3).all()
    preds = torch.tensor(train[:5].reshape(5, -1), dtype=torch.float64)
    _, logs = loss(keypoints_pred=preds, stage="val")
    assert float(logs[0]["value"]) < 1e-4
    assert logs[0]["name"] == "val_pca_singleview_loss"
    assert loss.pca.explained_variance_ratio.shape == (2, 8)


def test_never_labelled_keypoint_of_one_view_is_ignored(context):
    view0 = _low_rank(60, 8, 3, seed=4, noise=0.5).reshape(60, 4, 2)
    view1 = _low_rank(60, 8, 3, seed=5, noise=0.5).reshape(60, 4, 2)
    view1[:, 2] = NAN  # keypoint 2 never labelled in view 1
    view0[::7, 1] = NAN  # sporadic missing labels
    train = np.stack([view0, view1], 1)
    loss = PCASingleviewLoss(PCASingleviewLoss.Params(components_to_keep=3), context(train))
    assert loss.pca.observed.sum(-1).tolist() == [8, 6]
    assert torch.isfinite(loss.epsilon).all() and (loss.epsilon > 0).all()
    preds = torch.tensor(np.nan_to_num(train[1:5], nan=1e4).reshape(4, -1))  # rows 1-4: no gaps
    _, logs = loss(keypoints_pred=preds, stage="train")
    assert float(logs[0]["value"]) < 5.0  # the 1e4-px keypoint 2 of view 1 does not count
    # 7 components pass validate_context (8 dimensions per view) but view 1 has only 6
    # observed ones: the fit refuses, naming the parameter
    seven = PCASingleviewLoss.Params(components_to_keep=7)
    PCASingleviewLoss.validate_context(seven, context(train))
    with pytest.raises(ParamError, match="between 1 and the number of PCA dimensions \\(6\\)") \
            as info:
        PCASingleviewLoss(seven, context(train))
    assert info.value.field == "components_to_keep"


def test_nan_predictions_gradients_and_state(context):
    rows = _low_rank(300, 4, 3, noise=1.0, seed=6)
    train = _mirror_frames(rows, 3)
    loss = _multiview_loss(context, train, epsilon=0.0)
    g = torch.Generator().manual_seed(0)
    preds = torch.tensor(train[:6].reshape(6, -1), dtype=torch.float32)
    preds = preds + 20 * torch.randn(preds.shape, generator=g)
    preds[0, :2] = NAN  # part 0 of view 0 in frame 0: that row keeps its view-1 point
    preds.requires_grad_(True)
    weighted, logs = loss(keypoints_pred=preds, stage="train")
    weighted.backward()
    assert float(logs[0]["value"]) > 1.0
    assert torch.isclose(weighted, loss.weight * logs[0]["value"])
    assert torch.isfinite(preds.grad).all() and preds.grad[0, :2].abs().sum() == 0
    # a row with one of its 2 points missing has 2 coordinates <= 3 components: not counted
    assert preds.grad[0, 6:8].abs().sum() == 0 and preds.grad[1:].abs().sum() > 0
    everything_missing = torch.full_like(preds, NAN).requires_grad_(True)
    weighted, logs = loss(keypoints_pred=everything_missing, stage="train")
    weighted.backward()
    assert float(logs[0]["value"]) == 0.0 and torch.isfinite(everything_missing.grad).all()
    state = loss.state_dict()
    for key in ("pca.mean", "pca.kept_eigenvectors", "pca.discarded_eigenvectors", "epsilon"):
        assert key in state
    assert loss.to(torch.float64).pca.mean.dtype == torch.float64


def test_partial_rows_are_fitted_on_their_present_points(context):
    """A singleview row with one keypoint missing is projected by least squares on the rest:
    in-subspace rows give zero error on the present points."""
    train = _low_rank(80, 10, 2, seed=7).reshape(80, 1, 5, 2)
    params = PCASingleviewLoss.Params(components_to_keep=2, epsilon=0.0)
    loss = PCASingleviewLoss(params, context(train))
    preds = torch.tensor(train[:3].reshape(3, -1))
    preds[0, 4:6] = NAN
    errors, valid = loss.compute_loss(preds)
    assert valid.sum() == 3 * 5 - 1
    assert errors[valid].abs().max() < 1e-3  # float32 buffers, coordinates ~300 px


def test_pca_constructor_and_params_checks(context):
    train = _low_rank(60, 8, 3).reshape(60, 1, 4, 2)
    # the two losses are PCALoss in its two modes, each with its own Params
    assert issubclass(PCASingleviewLoss, PCALoss) and issubclass(PCAMultiviewLoss, PCALoss)
    assert (PCASingleviewLoss.mode, PCAMultiviewLoss.mode) == ("singleview", "multiview")
    # unknown and ill-typed options are refused by the Params model, before any fit
    with pytest.raises(ValidationError, match="extra"):
        PCASingleviewLoss.Params.model_validate({"loss_name": "pca_bogus"})
    with pytest.raises(ValidationError, match="components_to_keep"):
        PCASingleviewLoss.Params.model_validate({"components_to_keep": "3"})
    with pytest.raises(ValidationError, match="centering_method"):
        PCAMultiviewLoss.Params.model_validate({"centering_method": "mean"})
    with pytest.raises(ValidationError, match="empirical_epsilon_percentile"):
        PCASingleviewLoss.Params.model_validate({"empirical_epsilon_percentile": 101.0})
    # the constructor takes the validated Params, not a dict of options
    with pytest.raises(TypeError, match="validated params"):
        PCASingleviewLoss({"log_weight": 1.0}, context(train))
    # the PCA is fitted on the training labels: a context without them is refused
    with pytest.raises(ConfigError, match="Context.train_keypoints"):
        PCASingleviewLoss(PCASingleviewLoss.Params(), context(num_views=1, num_keypoints=4))
    loss = PCASingleviewLoss(PCASingleviewLoss.Params(log_weight=1.0), context(train))
    assert loss.loss_name == "pca_singleview" and loss.supervised is False and loss.annealed
    assert float(loss.weight) == pytest.approx(1 / (2 * math.e))


def test_validate_context_names_the_wrong_parameter(context):
    ctx = context(num_views=2, num_keypoints=4)  # no labels needed to validate
    single, multi = PCASingleviewLoss, PCAMultiviewLoss
    single.validate_context(single.Params(columns_for_singleview_pca=[0, 3]), ctx)
    multi.validate_context(multi.Params(mirrored_column_matches=[0, 3]), ctx)
    cases = [
        (single, {"columns_for_singleview_pca": [0, 4]}, "columns_for_singleview_pca",
         "must be non-empty indices into the 4 keypoints"),
        (multi, {"mirrored_column_matches": [0, 4]}, "mirrored_column_matches",
         "outside the 4 keypoints of a view"),
        (multi, {"mirrored_column_matches": [[0, 1], [2]]}, "mirrored_column_matches",
         "equal length"),
        (single, {"components_to_keep": 9}, "components_to_keep",
         "9 components but the PCA has 8 dimensions (x and y of 4 keypoints per view); give an "
         "int from 1 to 8"),
        (multi, {"components_to_keep": 5}, "components_to_keep",
         "5 components but the PCA has 4 dimensions (x and y in each of 2 views per body "
         "part); give an int from 1 to 4"),
        (multi, {"components_to_keep": 0}, "components_to_keep", "give an int from 1 to 4"),
        (multi, {"components_to_keep": 3.0}, "components_to_keep",
         "3.0 as a float is a fraction of explained variance and must be in [0, 1]; for a "
         "number of components write an int from 1 to 4"),
        (single, {"components_to_keep": -0.5}, "components_to_keep", "must be in [0, 1]"),
    ]
    for cls, raw, field, message in cases:
        with pytest.raises(ParamError) as info:
            cls.validate_context(cls.Params.model_validate(raw), ctx)
        assert info.value.field == field
        assert message in info.value.message


# ----------------------------------------------------------------- real data (acceptance)


def _read_dlc(path: Path) -> tuple[list[str], np.ndarray]:
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    names = list(dict.fromkeys(frame.columns.get_level_values(1)))
    return names, frame.to_numpy(dtype=float).reshape(len(frame), len(names), 2)


@pytest.mark.skipif(not (DATA / "mirror-mouse-example").is_dir(), reason="no mirror-mouse data")
def test_mirror_mouse_multiview_pca_explains_most_variance(context):
    names, keypoints = _read_dlc(DATA / "mirror-mouse-example" / "CollectedData.csv")
    top = {n.removesuffix("_top"): i for i, n in enumerate(names) if n.endswith("_top")}
    bot = {n.removesuffix("_bot"): i for i, n in enumerate(names) if n.endswith("_bot")}
    common = [n for n in top if n in bot]
    matches = [[top[n] for n in common], [bot[n] for n in common]]
    assert matches == [list(range(7)), list(range(8, 15))]
    loss = PCAMultiviewLoss(
        PCAMultiviewLoss.Params(mirrored_column_matches=matches),
        context(keypoints[:, None], keypoint_names=names),
    )
    evr = loss.pca.explained_variance_ratio[0]
    assert loss.pca.n_components.tolist() == [3]
    assert float(evr[:3].sum()) > 0.9
    assert 1.0 < float(loss.epsilon[0]) < 50.0  # 99th percentile of training errors, pixels


@pytest.mark.skipif(not (DATA / "mouse4cam").is_dir(), reason="no mouse4cam data")
def test_mouse4cam_singleview_per_view_pcas(context):
    views = ["back", "mid", "side", "top"]
    per_view = [_read_dlc(DATA / "mouse4cam" / f"CollectedData_{v}.csv")[1] for v in views]
    train = np.stack(per_view, 1)  # (60, 4, 15, 2)
    ctx = context(train, view_names=views, keypoint_names=[str(i) for i in range(15)])
    loss = PCASingleviewLoss(PCASingleviewLoss.Params(components_to_keep=0.99), ctx)
    # back never has TailTip / Shoulder_right, side never has Shoulder_left
    assert loss.pca.observed.sum(-1).tolist() == [26, 30, 28, 30]
    assert (loss.pca.n_components >= 2).all()
    assert torch.isfinite(loss.epsilon).all() and (loss.epsilon > 0).all()
    preds = torch.tensor(np.nan_to_num(train[:8]).reshape(8, -1))
    _, logs = loss(keypoints_pred=preds, stage="train")
    assert math.isfinite(float(logs[0]["value"]))


@pytest.mark.parametrize("name", ["pca_singleview", "pca_multiview"])
def test_keypoint_errors_place_each_pca_error_on_its_keypoint(name):
    from mvcore.testing import toy_context

    cls = PCAMultiviewLoss if name == "pca_multiview" else PCASingleviewLoss
    context = toy_context(num_views=2, num_keypoints=4, num_train=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pca_multiview warns about keeping 1 component, not 3
        loss = cls(cls.Params(components_to_keep=1, epsilon=0.0), context)
    preds = torch.as_tensor(context.train_keypoints()[:5], dtype=torch.float32)
    preds = preds.reshape(5, -1) + torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    per_keypoint = loss.keypoint_errors(preds)
    assert per_keypoint.shape == (5, 8) and torch.isfinite(per_keypoint).all()
    errors, valid = loss.compute_loss(preds)
    for frame in range(5):  # explicit placement: row/group/point -> (view, keypoint)
        for view in range(2):
            for kp in range(4):
                if name == "pca_multiview":
                    m = int((loss.pca.matches[view] == view * 4 + kp).nonzero())
                    expected = errors[frame * 4 + m, 0, view]
                else:
                    expected = errors[frame, view, kp]
                assert per_keypoint[frame, view * 4 + kp] == expected
    assert torch.isclose(per_keypoint.nanmean(), errors[valid].mean())
