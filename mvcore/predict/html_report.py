"""One self-contained HTML page about a trained model (``mvcore report MODEL_DIR``).

``mvcore train`` leaves files (``mvcore.predict.report``: metrics, labelled-frame predictions,
figures) and ``mvcore predict`` leaves CSVs (``mvcore.predict.video``); this page puts them in
front of a person, in a browser, with nothing to install and no network: plotly's offline
bundle is embedded once, images are data URIs. It shows:

- the run's metrics (``metrics.csv``), the resolved config and the plugin versions;
- the loss curves (``logs/metrics.csv``, Lightning's CSV log);
- per-keypoint and per-view pixel errors and PCK of the labelled-frame predictions against
  the labels (``mvcore.predict.evaluate.compute_evaluation``, the numbers of
  ``mvcore evaluate``), with the prediction reprojection error per view;
- a few labelled frames (``labeled_frames/*.png``: labels vs predictions);
- for each session predicted into ``MODEL_DIR/video_preds``: the 3D skeleton over time with
  a frame slider (the edges of ``data.skeleton`` in ``config.yaml`` when it has them, a list
  of ``[keypoint, keypoint]`` pairs; points only otherwise), the 2D traces of each keypoint
  with their likelihood, and the frames where the views disagree most (the mean reprojection
  error of the 3D CSV).

Missing parts (no videos predicted, no calibration, labels not found, no test split) are
stated in the page where they would be. Long sessions are subsampled (evenly; the frames with
the largest reprojection error are always kept in the 3D animation), and the page says so.
The page is written under a temporary name and renamed when complete (``mvcore.files``).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly
import yaml
from plotly.offline import get_plotlyjs
from tqdm.auto import tqdm

from mvcore import __version__
from mvcore.data.csv_io import read_keypoints_csv
from mvcore.errors import DataError, MvcoreError
from mvcore.files import write_text_atomically
from mvcore.predict.evaluate import compute_evaluation

__all__ = ["HTML_REPORT_NAME", "write_html_report"]

#: the page's default name in the model directory
HTML_REPORT_NAME = "report.html"
#: frames of a session's 3D animation at most (plus the worst-reprojected frames)
MAX_ANIMATION_FRAMES = 150
#: trace values (frames x views x keypoints x 3) of all sessions together at most
MAX_TRACE_VALUES = 400_000
#: frames of a session's traces at least, however many sessions share the budget
MIN_TRACE_FRAMES = 300
#: frames listed in a session's "views disagree most" table
WORST_FRAMES = 10
#: labelled-frame figures embedded at most
MAX_LABELED_FRAMES = 4
_VIEW_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class _Page:
    """The page being built: its sections (title, anchor, HTML) and the next figure id."""

    sections: list[tuple[str, str, str]] = field(default_factory=list)
    figures: int = 0

    def add(self, title: str, body: str) -> None:
        anchor = "s-" + "".join(c if c.isalnum() else "-" for c in title.lower())
        self.sections.append((title, anchor, body))

    def figure(self, data: list[dict[str, Any]], layout: dict[str, Any],
               frames: list[dict[str, Any]] | None = None) -> str:
        """A plotly figure (plotly.js's own JSON form: traces, layout, animation frames) as a
        div and the script that draws it; plotly.js is in the page's head. Plain dicts, not
        plotly's Python figure objects: their validation costs seconds per session."""
        self.figures += 1
        div = f"figure-{self.figures}"
        figure = {"data": data, "layout": layout, "config": _PLOT_CONFIG}
        if frames:
            figure["frames"] = frames
        text = json.dumps(figure, separators=(",", ":"), allow_nan=False)
        text = text.replace("</", "<\\/")  # a keypoint named "</script>" stays text
        return (f'<div id="{div}" class="figure"></div><script>'
                f'Plotly.newPlot("{div}", {text});</script>')


@dataclass
class _Session:
    """One predicted session: 2D per view ``(T, V, K, 2)``, likelihoods ``(T, V, K)`` and,
    with a calibration, the 3D points ``(T, K, 3)``, their reprojection errors and views."""

    name: str
    coords: np.ndarray
    likelihood: np.ndarray
    points: np.ndarray | None = None
    errors: np.ndarray | None = None
    ncams: np.ndarray | None = None


def write_html_report(model_dir: str | Path, out: str | Path | None = None,
                      progress: bool = True) -> Path:
    """Write the page (module docstring) to ``out`` (default ``MODEL_DIR/report.html``) and
    return its path. A folder that is not a model directory is a DataError."""
    model_dir = Path(model_dir)
    context = _model_context(model_dir)
    path = Path(out) if out is not None else model_dir / HTML_REPORT_NAME
    if path.is_dir():
        raise DataError(f"--out {path} is a folder; give the path of the HTML file to write")
    views, keypoints = list(context["view_names"]), list(context["keypoint_names"])
    raw_config = _read_text(model_dir / "config.yaml")
    page = _Page()
    page.add("Metrics", _metrics_section(model_dir))
    page.add("Loss curves", _loss_section(page, model_dir))
    page.add("Errors on the labelled frames", _errors_section(model_dir))
    page.add("Labelled frames", _labeled_frames_section(model_dir))
    sessions, notes = _find_sessions(model_dir / "video_preds", views)
    skeleton = _skeleton(raw_config, keypoints)
    trace_frames = _trace_frames(len(sessions), len(views), len(keypoints))
    bodies = []
    for name in tqdm(sessions, desc="report: sessions", unit="session", file=sys.stderr,
                     disable=not progress or len(sessions) < 2):
        session = _read_session(model_dir / "video_preds", name, views, keypoints)
        bodies.append(_session_section(page, session, views, keypoints, skeleton,
                                       trace_frames))
    page.add("Videos", _videos_intro(model_dir, sessions, notes, skeleton) + "".join(bodies))
    page.add("Config", _config_section(model_dir, raw_config))
    write_text_atomically(path, _render(page, model_dir))
    return path


# ------------------------------------------------------------------------------ inputs
def _model_context(model_dir: Path) -> dict[str, Any]:
    """``context.json`` of a model directory; a one-line DataError for anything else."""
    if not model_dir.is_dir():
        raise DataError(f"{model_dir} is not a model directory (no such folder); give a "
                        "folder written by `mvcore train`")
    missing = [n for n in ("config.yaml", "context.json") if not (model_dir / n).is_file()]
    if missing:
        raise DataError(f"{model_dir} is not a model directory (no {' or '.join(missing)}); "
                        "give a folder written by `mvcore train`")
    try:
        context = json.loads((model_dir / "context.json").read_text())
        if not (context["view_names"] and context["keypoint_names"]):
            raise ValueError("no views or keypoints")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{model_dir / 'context.json'}: not a model context ({exc}); give a "
                        "folder written by `mvcore train`") from exc
    return context


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _skeleton(raw_config: str, keypoints: list[str]) -> list[tuple[int, int]]:
    """Edges (keypoint indices) of ``data.skeleton`` in the config, if it has one."""
    try:
        edges = (yaml.safe_load(raw_config) or {}).get("data", {}).get("skeleton") or []
        index = {name: i for i, name in enumerate(keypoints)}
        return [(index[a], index[b]) for a, b in edges if a in index and b in index]
    except (yaml.YAMLError, AttributeError, TypeError, ValueError):
        return []


def _find_sessions(folder: Path, views: list[str]) -> tuple[list[str], list[str]]:
    """Sessions with a complete CSV for every view, and notes on the others."""
    if not folder.is_dir():
        return [], []
    found: dict[str, set[str]] = {}
    incomplete: set[str] = set()
    for path in folder.glob("*.csv"):
        stem = path.stem
        target = incomplete if stem.endswith(".incomplete") else None
        stem = stem.removesuffix(".incomplete")
        for view in views:
            if stem.endswith(f"_{view}") and len(stem) > len(view) + 1:
                session = stem[: -len(view) - 1]
                if target is not None:
                    target.add(session)
                else:
                    found.setdefault(session, set()).add(view)
    complete = sorted(s for s, seen in found.items() if seen == set(views))
    notes = [f"session {html.escape(s)}: CSVs of views {sorted(set(views) - seen)} are "
             "missing; not shown" for s, seen in sorted(found.items()) if seen != set(views)]
    notes += [f"session {html.escape(s)}: its prediction stopped part-way (.incomplete "
              "files); run <code>mvcore predict</code> again once the video is repaired"
              for s in sorted(incomplete - set(complete))]
    return complete, notes


def _read_session(folder: Path, name: str, views: list[str], keypoints: list[str]
                  ) -> _Session:
    """A session's per-view CSVs and its 3D CSV, keypoints in the model's order."""
    coords, likelihood = [], []
    for view in views:
        path = folder / f"{name}_{view}.csv"
        _, names, xy, conf = read_keypoints_csv(path)
        if sorted(names) != sorted(keypoints):
            raise DataError(f"{path}: keypoints {names} are not the model's {keypoints}")
        order = [names.index(k) for k in keypoints]
        coords.append(xy[:, order])
        likelihood.append(conf[:, order] if conf is not None else np.ones(xy.shape[:2]))
    frames = min(len(c) for c in coords)
    session = _Session(name, np.stack([c[:frames] for c in coords], axis=1),
                       np.stack([c[:frames] for c in likelihood], axis=1))
    path_3d = folder / f"{name}_3d.csv"
    if path_3d.is_file():
        table = pd.read_csv(path_3d)
        try:
            session.points = np.stack([table[[f"{k}_x", f"{k}_y", f"{k}_z"]].to_numpy(float)
                                       for k in keypoints], axis=1)
            session.errors = np.stack([table[f"{k}_error"].to_numpy(float) for k in keypoints],
                                      axis=1)
            session.ncams = np.stack([table[f"{k}_ncams"].to_numpy(float) for k in keypoints],
                                     axis=1)
        except KeyError as exc:
            raise DataError(f"{path_3d}: no column {exc}; not a 3D CSV of this model") from exc
    return session


def _trace_frames(sessions: int, views: int, keypoints: int) -> int:
    """Frames per session in the traces: the page's budget shared by the sessions."""
    return max(MIN_TRACE_FRAMES, MAX_TRACE_VALUES // max(1, sessions * views * keypoints * 3))


# ---------------------------------------------------------------------------- sections
def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _table(frame: pd.DataFrame, caption: str = "", digits: int = 2) -> str:
    """An HTML table of ``frame`` (its index not shown), numbers rounded."""
    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "&ndash;" if not np.isfinite(value) else f"{value:.{digits}f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    caption = f"<caption>{caption}</caption>" if caption else ""
    return f'<table class="data">{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>' \
           "</table>"


def _metrics_section(model_dir: Path) -> str:
    path = model_dir / "metrics.csv"
    if not path.is_file():
        return _note("No <code>metrics.csv</code>: the training did not reach its report "
                     "(it stopped, or is still running).")
    metrics = pd.read_csv(path)
    metrics["value"] = pd.to_numeric(metrics["value"], errors="coerce")
    return _table(metrics, digits=4) + _note(
        "Pixel errors in frame pixels; every metric is defined in <code>docs/metrics.md</code>.")


def _loss_section(page: _Page, model_dir: Path) -> str:
    path = model_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return _note("No training log (<code>logs/metrics.csv</code>).")
    log = pd.read_csv(path)
    if "step" not in log:
        return _note(f"<code>{html.escape(str(path))}</code> has no step column.")
    data = []
    losses = [c for c in ("train_loss",) if c in log]
    losses += sorted(c for c in log if c.startswith("train_") and c.endswith("_loss_step")
                     and "weighted" not in c and "annealed" not in c)
    for name in losses:
        series = log[["step", name]].dropna()
        data.append({"type": "scatter", "name": name,
                     "mode": "lines" if len(series) > 30 else "lines+markers",  # 1 point shows
                     "x": series["step"].astype(int).tolist(), "y": _round(series[name], 6),
                     "visible": True if name == "train_loss" else "legendonly"})
    for name in ("train_pixel_error", "val_pixel_error"):
        if name in log:
            series = log[["step", name]].dropna()
            data.append({"type": "scatter", "mode": "lines+markers", "name": name,
                         "x": series["step"].astype(int).tolist(), "y": _round(series[name]),
                         "xaxis": "x2", "yaxis": "y2"})
    if not data:
        return _note(f"<code>{html.escape(str(path))}</code> logs no loss.")
    layout = {"height": 380, "margin": {"t": 30, "b": 40, "l": 60, "r": 20},
              "xaxis": {"domain": [0, 0.42], "title": {"text": "step"}, "anchor": "y"},
              "yaxis": {"type": "log", "title": {"text": "training loss"}, "anchor": "x"},
              "xaxis2": {"domain": [0.55, 0.97], "title": {"text": "step"}, "anchor": "y2"},
              "yaxis2": {"title": {"text": "pixel error (px)"}, "anchor": "x2"}}
    return page.figure(data, layout) + _note(
        "Click a legend entry to show or hide a curve (each loss's unweighted term is there, "
        "hidden at first).")


def _errors_section(model_dir: Path) -> str:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compute_evaluation(model_dir)
    except (MvcoreError, OSError) as exc:
        return _note(f"Not available: {html.escape(str(exc))}")
    pixel = result.pixel_error
    split = result.main_split
    out = [_note({
        "test": "Test frames (used neither for training nor for choosing the checkpoint).",
        "validation": "No test split: these are the <b>validation</b> frames, which chose "
                      "the checkpoint (optimistic).",
    }.get(split, "No split column: all labelled frames.") + " Frame pixels; "
        "<code>mvcore evaluate</code> writes every split.")]
    chosen = pixel[pixel.split == split]
    views = list(dict.fromkeys(chosen.view))
    grid = chosen.pivot(index="keypoint", columns="view", values="mean")
    order = list(dict.fromkeys(chosen.keypoint))
    grid = grid.reindex(index=order, columns=views)
    per_kp = pd.DataFrame({"keypoint": order})
    for view in views:
        per_kp[f"mean {view}" if view != "all" else "mean (all views)"] = grid[view].to_numpy()
    overall = chosen[chosen.view == "all"].set_index("keypoint").reindex(order)
    per_kp["median (all views)"] = overall["median"].to_numpy()
    per_kp["n"] = overall["n"].to_numpy()
    out.append(_table(per_kp, "pixel error per keypoint (px)"))
    per_view = chosen[chosen.keypoint == "all"][["view", "n", "mean", "median"]].copy()
    per_view.columns = ["view", "n", "mean px", "median px"]
    pck = result.pck[result.pck.split == split]
    for threshold in dict.fromkeys(pck.threshold):
        values = pck[pck.threshold == threshold].set_index("view")["pck"]
        per_view[f"PCK@{threshold}"] = per_view["view"].map(values).to_numpy()
    if result.reprojection_error is not None:
        reprojection = result.reprojection_error
        reprojection = reprojection[reprojection.split == split].set_index("view")
        per_view["reprojection median px"] = per_view["view"].map(
            reprojection["median"]).to_numpy()
    else:
        out.append(_note("No calibration: no reprojection error."))
    out.append(_table(per_view, "per view"))
    for warning in caught:
        out.append(_note(f"warning: {html.escape(str(warning.message))}"))
    return "".join(out)


def _labeled_frames_section(model_dir: Path) -> str:
    images = sorted((model_dir / "labeled_frames").glob("*.png"))
    if not images:
        return _note("No labelled-frame figures (<code>labeled_frames/*.png</code>).")
    shown = images[:MAX_LABELED_FRAMES]
    out = [_note("Labels: green +, predictions: red &times;; all views side by side.")]
    for path in shown:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{html.escape(path.name)}" '
                   f'src="data:image/png;base64,{data}"><figcaption>{html.escape(path.name)}'
                   "</figcaption></figure>")
    if len(images) > len(shown):
        out.append(_note(f"{len(shown)} of {len(images)} figures shown; all are in "
                         "<code>labeled_frames/</code>."))
    return "".join(out)


def _videos_intro(model_dir: Path, sessions: list[str], notes: list[str],
                  skeleton: list[tuple[int, int]]) -> str:
    if not sessions:
        text = ("No videos predicted: run <code>mvcore predict "
                f"{html.escape(str(model_dir))}</code>, then this command again.")
        return "".join(_note(n) for n in [text, *notes])
    listing = ", ".join(f'<a href="#session-{html.escape(s)}">{html.escape(s)}</a>'
                        for s in sessions)
    edges = ("skeleton edges from <code>data.skeleton</code> in the config" if skeleton else
             "points only (the config has no <code>data.skeleton</code>)")
    return "".join(_note(n) for n in [
        f"{len(sessions)} session(s) in <code>video_preds/</code>: {listing}. 3D view: "
        f"{edges}.", *notes])


def _session_section(page: _Page, session: _Session, views: list[str], keypoints: list[str],
                     skeleton: list[tuple[int, int]], trace_frames: int) -> str:
    name = html.escape(session.name)
    frames = len(session.coords)
    out = [f'<section class="session" id="session-{name}"><h3>session {name}</h3>',
           _note(f"{frames} frames, {len(views)} views.")]
    worst: list[int] = []
    if session.points is not None and session.errors is not None:
        per_frame = _nanmean_rows(session.errors)
        worst = _worst_frames(per_frame, WORST_FRAMES)
        out.append("<h4>3D pose</h4>")
        out.append(_pose_figure(page, session, keypoints, skeleton, worst))
        out.append("<h4>Where the views disagree most</h4>")
        out.append(_disagreement(page, session, keypoints, per_frame, worst))
    else:
        out.append(_note("No 3D CSV for this session (no calibration): no 3D view and no "
                         "reprojection error."))
    out.append("<h4>Keypoint traces and likelihood</h4>")
    out.append(_traces_figure(page, session, views, keypoints, trace_frames))
    out.append("</section>")
    return "".join(out)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where a row has no value (no warning)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _worst_frames(per_frame: np.ndarray, count: int) -> list[int]:
    """The ``count`` frames with the largest finite value, largest first."""
    finite = np.flatnonzero(np.isfinite(per_frame))
    order = finite[np.argsort(-per_frame[finite], kind="stable")]
    return [int(i) for i in order[:count]]


def _even_frames(total: int, count: int) -> np.ndarray:
    """``count`` evenly spaced frames of ``0..total-1`` (all when there are fewer)."""
    if total <= count:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def _round(values: np.ndarray, digits: int = 2) -> list[float | None]:
    """Plain-list numbers for plotly, NaN as None (a gap), rounded to keep the page small."""
    return [None if not math.isfinite(v) else round(float(v), digits)
            for v in np.asarray(values, dtype=np.float64).ravel()]


def _pose_traces(points: np.ndarray, keypoints: list[str], skeleton: list[tuple[int, int]],
                 colors: list[str]) -> list[dict[str, Any]]:
    """One frame's points ``(K, 3)`` and skeleton lines, as plotly traces."""
    traces: list[dict[str, Any]] = [{
        "type": "scatter3d", "mode": "markers", "name": "keypoints", "text": keypoints,
        "x": _round(points[:, 0]), "y": _round(points[:, 1]), "z": _round(points[:, 2]),
        "hovertemplate": "%{text}<br>(%{x}, %{y}, %{z})<extra></extra>",
        "marker": {"size": 4, "color": colors}}]
    if skeleton:
        xyz: list[list[float | None]] = [[], [], []]
        for a, b in skeleton:
            for axis in range(3):
                xyz[axis] += [*_round(points[[a, b], axis]), None]
        traces.append({"type": "scatter3d", "mode": "lines", "name": "skeleton",
                       "x": xyz[0], "y": xyz[1], "z": xyz[2], "hoverinfo": "skip",
                       "line": {"color": "#444", "width": 4}})
    return traces


def _pose_figure(page: _Page, session: _Session, keypoints: list[str],
                 skeleton: list[tuple[int, int]], worst: list[int]) -> str:
    assert session.points is not None
    points = session.points
    frames = np.union1d(_even_frames(len(points), MAX_ANIMATION_FRAMES),
                        np.asarray(worst, dtype=np.int64))
    finite = points[np.isfinite(points).all(-1)]
    if not len(finite):
        return _note("No keypoint was triangulated in this session (fewer than two views "
                     "above the confidence threshold everywhere).")
    colors = [_keypoint_color(i, len(keypoints)) for i in range(len(keypoints))]
    low, high = finite.min(axis=0), finite.max(axis=0)
    pad = 0.05 * float((high - low).max() or 1.0)
    low, high = low - pad, high + pad
    span = high - low
    frame_list = [{"name": str(int(t)),
                   "data": _pose_traces(points[t], keypoints, skeleton, colors)}
                  for t in frames]
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                 "transition": {"duration": 0}}
    play_args = {**step_args, "frame": {"duration": 80, "redraw": True}, "fromcurrent": True}
    layout = {
        "height": 520, "margin": {"t": 30, "b": 10, "l": 10, "r": 10}, "showlegend": False,
        "scene": {"xaxis": {"range": _round(np.array([low[0], high[0]])), "title": "x"},
                  "yaxis": {"range": _round(np.array([low[1], high[1]])), "title": "y"},
                  "zaxis": {"range": _round(np.array([low[2], high[2]])), "title": "z"},
                  "aspectmode": "manual",
                  # a flat axis (height, for an animal on a floor) is kept visible
                  "aspectratio": dict(zip("xyz", _round(np.maximum(span / span.max(), 0.3),
                                                        3)))},
        "sliders": [{"active": 0, "currentvalue": {"prefix": "frame "}, "pad": {"t": 10},
                     "steps": [{"label": str(int(t)), "method": "animate",
                                "args": [[str(int(t))], step_args]} for t in frames]}],
        "updatemenus": [{"type": "buttons", "showactive": False, "x": 0, "y": 0,
                         "xanchor": "right", "yanchor": "top", "pad": {"t": 45, "r": 10},
                         "buttons": [{"label": "play", "method": "animate",
                                      "args": [None, play_args]},
                                     {"label": "pause", "method": "animate",
                                      "args": [[None], step_args]}]}]}
    note = (f"All {len(points)} frames." if len(frames) == len(points) else
            f"{len(frames)} of {len(points)} frames (evenly spaced, plus the {len(worst)} "
            "frames where the views disagree most), to keep the page small; the 3D CSV has "
            "every frame.")
    return page.figure(frame_list[0]["data"], layout, frame_list) + _note(
        note + " Drag to turn the view; the slider picks the frame.")


def _disagreement(page: _Page, session: _Session, keypoints: list[str],
                  per_frame: np.ndarray, worst: list[int]) -> str:
    assert session.errors is not None and session.ncams is not None
    if not worst:
        return _note("No frame was triangulated: no reprojection error.")
    bins = _binned_max(per_frame, MAX_TRACE_VALUES // 100)
    data = [{"type": "scatter", "mode": "lines", "name": "mean over keypoints", "x": bins[0],
             "y": _round(bins[1]), "line": {"color": "#555"}},
            {"type": "scatter", "mode": "markers", "name": "worst frames", "x": worst,
             "y": _round(per_frame[worst]), "marker": {"color": "#d62728", "size": 8}}]
    layout = {"height": 260, "margin": {"t": 20, "b": 40, "l": 60, "r": 20},
              "showlegend": False, "xaxis": {"title": {"text": "frame"}},
              "yaxis": {"title": {"text": "reprojection error (px)"}}}
    rows = []
    for t in worst:
        errors = session.errors[t]
        j = int(np.nanargmax(np.where(np.isfinite(errors), errors, -np.inf)))
        rows.append((t, per_frame[t], keypoints[j], errors[j], int(session.ncams[t, j])))
    table = pd.DataFrame(rows, columns=["frame", "mean reprojection error px",
                                        "worst keypoint", "its error px", "its views"])
    binned = "" if len(bins[0]) == len(per_frame) else \
        f" The curve shows the largest value of every {bins[2]} frames."
    return page.figure(data, layout) + _note(
        "The reprojection error of a frame: the mean over keypoints of each triangulated "
        "point's mean distance (px) between the views' predictions and the point projected "
        f"into them (<code>_error</code> in the 3D CSV).{binned}") + _table(table)


def _binned_max(values: np.ndarray, count: int) -> tuple[list[int], np.ndarray, int]:
    """``values`` as at most ``count`` bins, each its largest finite value (so peaks stay):
    (first frame of each bin, the values, the bin size)."""
    size = max(1, math.ceil(len(values) / max(count, 1)))
    padded = np.full(math.ceil(len(values) / size) * size, np.nan)
    padded[: len(values)] = values
    blocks = padded.reshape(-1, size)
    finite = np.isfinite(blocks)
    peak = np.where(finite.any(axis=1), np.where(finite, blocks, -np.inf).max(axis=1), np.nan)
    return list(range(0, len(values), size)), peak, size


def _traces_figure(page: _Page, session: _Session, views: list[str], keypoints: list[str],
                   trace_frames: int) -> str:
    frames = _even_frames(len(session.coords), trace_frames)
    data, owner = [], []
    x = frames.tolist()
    for j in range(len(keypoints)):
        for v, view in enumerate(views):
            color = _VIEW_COLORS[v % len(_VIEW_COLORS)]
            series = (session.coords[frames, v, j, 0], session.coords[frames, v, j, 1],
                      session.likelihood[frames, v, j])
            for row, values in enumerate(series, start=1):
                data.append({"type": "scatter", "mode": "lines", "name": view,
                             "legendgroup": view, "showlegend": row == 1, "visible": j == 0,
                             "x": x, "y": _round(values, 1 if row < 3 else 3),
                             "xaxis": "x", "yaxis": f"y{row if row > 1 else ''}",
                             "line": {"color": color, "width": 1}})
                owner.append(j)
    buttons = [{"label": name, "method": "update",
                "args": [{"visible": [k == j for k in owner]}]}
               for j, name in enumerate(keypoints)]
    layout = {
        "height": 560, "margin": {"t": 50, "b": 40, "l": 60, "r": 20},
        "xaxis": {"anchor": "y3", "title": {"text": "frame"}},
        "yaxis": {"domain": [0.68, 1], "anchor": "x", "title": {"text": "x (px)"}},
        "yaxis2": {"domain": [0.35, 0.65], "anchor": "x", "title": {"text": "y (px)"},
                   "autorange": "reversed"},
        "yaxis3": {"domain": [0, 0.3], "anchor": "x", "title": {"text": "likelihood"},
                   "range": [0, 1.05]},
        "updatemenus": [{"buttons": buttons, "x": 0, "y": 1.02, "xanchor": "left",
                         "yanchor": "bottom", "direction": "down"}],
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02,
                   "yanchor": "bottom"}}
    note = ("Every frame." if len(frames) == len(session.coords) else
            f"Every {math.ceil(len(session.coords) / len(frames))}th frame ({len(frames)} of "
            f"{len(session.coords)}), to keep the page small; the CSVs have every frame.")
    return page.figure(data, layout) + _note(
        f"Pick the keypoint in the menu; one line per view, in frame pixels. {note}")


def _keypoint_color(index: int, count: int) -> str:
    """A distinct colour per keypoint (hue wheel)."""
    hue = index / max(count, 1)
    red, green, blue = (int(255 * (0.5 + 0.45 * math.cos(2 * math.pi * (hue + shift))))
                        for shift in (0.0, 1 / 3, 2 / 3))
    return f"rgb({red},{green},{blue})"


def _config_section(model_dir: Path, raw_config: str) -> str:
    out = ["<details open><summary><code>config.yaml</code> (resolved)</summary><pre>"
           f"{html.escape(raw_config)}</pre></details>"]
    plugins = _read_text(model_dir / "plugins.json")
    if plugins:
        out.append("<details><summary><code>plugins.json</code> (versions)</summary><pre>"
                   f"{html.escape(plugins)}</pre></details>")
    checkpoints = sorted(p.name for p in (model_dir / "checkpoints").glob("*.ckpt"))
    out.append(_note("Checkpoints: " + (", ".join(checkpoints) if checkpoints else "none")))
    return "".join(out)


# ------------------------------------------------------------------------------- the page
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px;
       color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 1em; }
table.data { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
table.data caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
table.data th, table.data td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.data th { background: #f3f3f3; }
table.data td:first-child, table.data th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; }
figure { margin: 0.5em 0; } figure img { max-width: 100%; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
#script-errors { background: #fdd; border: 1px solid #d00; padding: 8px; }
"""

#: shows script errors in the page itself (a figure that failed to draw says so)
_ERROR_HOOK = """
window.mvcoreErrors = [];
function mvcoreShowErrors() {
  var box = document.getElementById("script-errors");
  if (box && window.mvcoreErrors.length) {
    box.hidden = false;
    box.textContent = "Part of this page failed to draw: " + window.mvcoreErrors.join("; ");
  }
}
window.addEventListener("error", function (e) {
  window.mvcoreErrors.push(String(e.message)); mvcoreShowErrors(); });
window.addEventListener("unhandledrejection", function (e) {
  window.mvcoreErrors.push(String(e.reason)); mvcoreShowErrors(); });
document.addEventListener("DOMContentLoaded", mvcoreShowErrors);
"""


def _render(page: _Page, model_dir: Path) -> str:
    title = f"mvcore report: {model_dir.resolve().name}"
    nav = "".join(f'<a href="#{anchor}">{html.escape(t)}</a>' for t, anchor, _ in page.sections)
    body = "".join(f'<section id="{anchor}"><h2>{html.escape(t)}</h2>{content}</section>'
                   for t, anchor, content in page.sections)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>",
        f"<script>{_ERROR_HOOK}</script>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>", '<div id="script-errors" hidden></div>',
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(str(model_dir.resolve()))} &middot; written {when} by '
        f"mvcore {__version__} (<code>mvcore report</code>) &middot; plotly "
        f"{plotly.__version__}, embedded: no network needed</p>",
        f"<nav>{nav}</nav>", body, "</body></html>"])
