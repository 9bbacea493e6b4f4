"""The README's two set-up commands stay true: CI runs exactly the README's test command."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = text.split("```bash\n")[1:]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    for step in ("mvcore example-data", "mvcore train", "mvcore predict"):
        assert step in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci
