"""Issue 15: every common input mistake is one ``error:`` line through the CLI (exit 2), naming
the file, line, key or frame and what to do - never a traceback - and is caught by
``mvcore config check`` where the config or the project shows it (no training needed).

Each case corrupts a copy of a small example project (built once) the way users do, then runs
the command in-process. Families: labels (far outside the image, none at all, max_epochs < 1),
duplicated frames, and the mistakes that used to end in a traceback or a confusing message
(broken images, config ranges, PCA components, DeepLabCut header variants, other
delimiters, a 3D loss without calibration).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mvcore.cli.main import main
from mvcore.example import make_example_project

CSV_A = "CollectedData_cam_a.csv"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """A small calibrated example project (3 views, 64 px images, 8 labelled frames)."""
    root = tmp_path_factory.mktemp("input_errors") / "proj"
    make_example_project(root, num_frames=16, image_size=64)
    return root


@pytest.fixture
def project(example, tmp_path) -> Path:
    """A fresh copy of the example to corrupt (without its videos)."""
    dest = tmp_path / "proj"
    shutil.copytree(example, dest, ignore=shutil.ignore_patterns("videos"))
    return dest


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process -> ``(exit code, stderr)``; no traceback anywhere."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def _one_error(err: str) -> str:
    """The single ``error:`` line of a failed command (warnings may come before it)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").endswith(errors[0]), err  # nothing after the error line
    return errors[0]


def _edit(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def _set_cell(path: Path, line: int, column: int, text: str) -> None:
    def edit(lines: list[str]) -> list[str]:
        cells = lines[line - 1].split(",")
        cells[column - 1] = text
        lines[line - 1] = ",".join(cells)
        return lines
    _edit(path, edit)


def _image(project: Path, view: str, row: int) -> Path:
    return sorted((project / "labeled-data" / f"session0_{view}").glob("*.png"))[row]


def _check(project: Path, capsys, *extra: str) -> tuple[int, str]:
    return _run(["config", "check", str(project / "config.yaml"), *extra], capsys)


def test_the_clean_example_passes(project, capsys):
    """The control case: the uncorrupted copy is OK, with what was checked."""
    code = main(["config", "check", str(project / "config.yaml")])
    out, err = capsys.readouterr()
    assert code == 0 and "error" not in err
    assert out.startswith(f"{project / 'config.yaml'}: OK (losses: heatmap_mse; ")
    assert out.rstrip().endswith("8 labelled frames, 3 views, 10 keypoints, calibrated)")


# ------------------------------------------------------------------- labels and epochs


@pytest.mark.parametrize("value", ["1e9", "1e20", "-9999"])
def test_a_label_far_outside_its_image(project, capsys, value):
    _set_cell(project / CSV_A, 4, 2, value)  # line 4 = first image, column 2 = nose x
    code, err = _check(project, capsys)
    assert code == 2
    error = _one_error(err)
    assert error.startswith(f"error: {project / CSV_A}, line 4, column 2 (nose, labeled-data/"
                            "session0_cam_a/img0000.png): label (")
    assert "lies far outside the 64x64 (w x h) image" in error
    assert "fix it, or leave its x, y cells empty" in error


def test_a_project_without_labels(project, capsys):
    for view in ("a", "b", "c"):
        _edit(project / f"CollectedData_cam_{view}.csv", lambda ls: ls[:3] + [
            line.split(",")[0] + "," * line.count(",") for line in ls[3:]])
    code, err = _check(project, capsys)
    assert code == 2
    assert _one_error(err) == (
        "error: no labelled points in CollectedData_cam_a.csv, CollectedData_cam_b.csv, "
        "CollectedData_cam_c.csv: every x, y cell is empty (or visible=1); label some frames, "
        "or check that data.csv_file names the label files")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_epochs_below_one(project, capsys, value):
    code, err = _check(project, capsys, "--no-data", "--set", f"training.max_epochs={value}")
    assert code == 2
    assert _one_error(err) == (f"error: invalid config {project / 'config.yaml'}: "
                               f"training.max_epochs: must be >= 1 (got {value})")


# ------------------------------------------------------------------- duplicated frames


def test_the_same_image_listed_twice_is_an_error(project, capsys):
    for view in ("a", "b", "c"):  # line 6 repeats line 4's image and labels, in every view
        _edit(project / f"CollectedData_cam_{view}.csv", lambda ls: ls[:5] + [ls[3]] + ls[6:])
    code, err = _check(project, capsys)
    assert code == 2
    assert _one_error(err) == (
        f"error: {project / CSV_A}, line 6 (labeled-data/session0_cam_a/img0000.png): image "
        f"listed twice in {CSV_A} (also line 4); a frame must be labelled once: remove one of "
        "the rows (from every view's CSV)")


def test_identical_labels_for_two_images_are_a_warning(project, capsys):
    _edit(project / CSV_A, lambda ls: ls[:4] + [ls[4].split(",")[0] + ","
                                                + ls[3].split(",", 1)[1]] + ls[5:])
    with pytest.warns(UserWarning) as record:  # the CLI prints it as "warning: ..."
        code, _ = _check(project, capsys)
    assert code == 0
    assert any(str(w.message).startswith(
        f"{project / CSV_A}: lines 4 and 5 (labeled-data/session0_cam_a/img0000.png, "
        "labeled-data/session0_cam_a/img0002.png) have identical labels") for w in record)


# --------------------------------------------------- mistakes that used to be tracebacks


def test_a_truncated_image_is_found_before_training(project, capsys):
    image = _image(project, "cam_b", 3)
    image.write_bytes(image.read_bytes()[:-100])
    code, err = _check(project, capsys)
    assert code == 2
    error = _one_error(err)
    assert error.startswith(f"error: {project / 'CollectedData_cam_b.csv'}, line 7 "
                            f"(labeled-data/session0_cam_b/{image.name}): cannot read image")
    assert error.endswith("replace it with a good copy (extract the frame again)")


def test_an_odd_sized_image_is_found_before_training(project, capsys):
    image = _image(project, "cam_c", 2)
    Image.open(image).resize((50, 40)).save(image)
    code, err = _check(project, capsys)
    assert code == 2
    error = _one_error(err)
    assert error.startswith(f"error: {project / 'CollectedData_cam_c.csv'}, line 6 "
                            f"(labeled-data/session0_cam_c/{image.name}): image is 50x40 "
                            "(w x h) but the first image of its folder")
    assert "is 64x64; the frames of one folder (one video) must have one size" in error


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("training.min_epochs", "-5", "must be >= 0"),
    ("training.max_epochs", "-3", "must be >= 1"),
    ("training.train_batch_size", "0", "must be >= 1"),
    ("training.val_batch_size", "0", "must be >= 1"),
    ("training.optimizer_params.learning_rate", "-0.001", "must be > 0"),
    ("training.num_workers", "-1", "must be >= 0"),
])
def test_config_ranges_are_caught_by_config_check(project, capsys, key, value, rule):
    config = project / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    node = raw
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[key.split(".")[-1]] = yaml.safe_load(value)  # the value written in the file
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    for extra in ([], ["--no-data"]):  # caught by the schema, before the project is read
        code, err = _check(project, capsys, *extra)
        assert code == 2
        assert _one_error(err) == f"error: invalid config {config}: {key}: {rule} (got {value})"


def test_more_pca_components_than_dimensions(project, capsys):
    code, err = _check(project, capsys, "--set", "model.losses_to_use=[pca_multiview]",
                       "--set", "losses.pca_multiview.components_to_keep=20")
    assert code == 2
    assert _one_error(err) == (
        "error: losses.pca_multiview.components_to_keep: 20 components but the PCA has 6 "
        "dimensions (x and y in each of 3 views per body part); give an int from 1 to 6, or a "
        "float in [0, 1] (a fraction of explained variance)")


def test_a_label_csv_without_its_scorer_row(project, capsys):
    _edit(project / CSV_A, lambda ls: ls[1:])
    code, err = _check(project, capsys)
    assert code == 2
    assert _one_error(err) == (
        f"error: {project / CSV_A}: line 1 is the bodyparts row and line 2 the coords row: the "
        "scorer row is missing; DeepLabCut CSVs start with 3 header rows (scorer, bodyparts, "
        "coords): add a line 'scorer,<name>,<name>,...' above line 1")


def test_a_multi_animal_label_csv(project, capsys):
    _edit(project / CSV_A, lambda ls: [ls[0], "individuals" + ",mouse1" * ls[0].count(","),
                                       *ls[1:]])
    code, err = _check(project, capsys)
    assert code == 2
    assert _one_error(err) == (
        f"error: {project / CSV_A}: line 2 is an 'individuals' row: a multi-animal DeepLabCut "
        "file; mvcore reads single-animal files (scorer, bodyparts, coords rows): export one "
        "animal per file")


def test_a_semicolon_separated_label_csv(project, capsys):
    _edit(project / CSV_A, lambda ls: [line.replace(",", ";") for line in ls])
    code, err = _check(project, capsys)
    assert code == 2
    assert _one_error(err) == (
        f"error: {project / CSV_A}: the file is semicolon-separated (';' in line 1, no ','); "
        "mvcore reads comma-separated CSV: save it with ',' as the delimiter")


def test_a_3d_loss_on_an_uncalibrated_project(project, capsys):
    (project / "calibration.toml").unlink()
    _edit(project / "config.yaml", lambda ls: [x for x in ls if "calibration_file" not in x])
    code, err = _check(project, capsys,
                       "--set", "losses.supervised_pairwise_projections.log_weight=0.5")
    assert code == 2
    error = _one_error(err)
    assert error.startswith(
        "error: losses.supervised_pairwise_projections: loss 'supervised_pairwise_projections' "
        "(from mv-losses ")
    assert re.search(r"\) needs a camera calibration for every labelled frame, and this project "
                     r"has none \(or not for every session\): add calibration.toml", error)


def test_an_image_that_fails_in_a_dataloader_worker_is_one_line(project, capsys, tmp_path):
    """Pixels damaged inside a PNG pass the header check at load and fail when a DataLoader
    worker decodes them: one line naming the file, not the worker's traceback."""
    for view in ("cam_a", "cam_b", "cam_c"):  # every image: the first batch meets one
        for image in (project / "labeled-data" / f"session0_{view}").glob("*.png"):
            data = bytearray(image.read_bytes())
            start = data.index(b"IDAT") + 8
            data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
            image.write_bytes(bytes(data))
    code, err = _run(["train", str(project / "config.yaml"), "--output", str(tmp_path / "m"),
                      "--set", "training.num_workers=1", "--set", "training.max_epochs=1",
                      "--set", "training.min_epochs=1"], capsys)
    assert code == 2
    error = _one_error(err)
    assert re.fullmatch(rf"error: cannot decode image {re.escape(str(project))}/labeled-data/"
                        r"session0_cam_\w/img\d+\.png: .*; replace it with a good copy", error)
