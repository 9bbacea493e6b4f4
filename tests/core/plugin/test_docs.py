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
