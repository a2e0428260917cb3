"""docs/dedup.md's examples run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "dedup.md").read_text()


def test_every_python_example_in_the_dedup_doc_runs() -> None:
    examples = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    assert examples
    for code in examples:
        exec(compile(code, "docs/dedup.md", "exec"), {"__name__": "dedup_doc_example"})
