"""Every hook specification is documented in docs/plugins.md with its exact signature."""

import inspect
from pathlib import Path

from mvcore.plugin import hookspecs

DOC = (Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text()


def test_every_hookspec_signature_is_in_the_author_guide():
    specs = [name for name in dir(hookspecs) if name.startswith("mvcore_")]
    assert len(specs) == 4
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in DOC, f"docs/plugins.md lacks {name}({params})"


def _input_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows[cells[0].strip("`")] = [c.replace("`", "") for c in cells[1:]]
    return rows


def test_the_documented_loss_inputs_are_the_typed_contract():
    from mvcore.contracts import LOSS_INPUTS

    rows = _input_rows()
    assert list(rows) == list(LOSS_INPUTS)
    for name, spec in LOSS_INPUTS.items():
        shape, meaning, target, calibrated, on_demand, uncalibrated = rows[name]
        flags = ["yes" if f else "" for f in (spec.target, spec.calibrated, spec.on_demand)]
        assert [shape, meaning, target, calibrated, on_demand, uncalibrated] == [
            spec.shape, spec.meaning, *flags, spec.uncalibrated], name


def test_the_documented_context_fields_are_the_context():
    from dataclasses import fields

    from mvcore.context import Context

    section = DOC[DOC.index("## 6. The context"):DOC.index("Lightning Pose configs set")]
    documented = {name.strip("`() ") for line in section.splitlines() if line.startswith("| `")
                  for name in line.split("|")[1].replace(",", " ").split() if "`" in name}
    public = {f.name for f in fields(Context)} - {"labels_source"} | {"train_keypoints"}
    assert public <= documented, public - documented
