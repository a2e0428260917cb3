"""docs/messages.md's examples run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "messages.md").read_text()


def test_every_python_example_in_the_messages_doc_runs() -> None:
    examples = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    assert examples
    for code in examples:
        # dont_inherit: pydantic resolves the example's real annotations
        exec(compile(code, "docs/messages.md", "exec", dont_inherit=True), {"__name__": "doc"})
