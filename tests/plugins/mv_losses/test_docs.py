"""docs/config.md lists every mv-losses loss and every parameter of its Params model."""

from pathlib import Path

from mvcore.plugin.components import load_components

DOC = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text()


def test_every_loss_parameter_is_documented():
    losses = load_components(refresh=True).losses
    section = DOC.split("## losses", 1)[1].split("## callbacks", 1)[0]
    for name in losses.by_provider()["mv-losses"]:
        row = next((line for line in section.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"docs/config.md has no row for {name}"
        for field in losses.get(name).Params.model_fields:
            assert f"`{field}`" in row, f"{name}.{field} undocumented"
