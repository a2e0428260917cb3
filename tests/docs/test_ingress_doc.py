"""docs/ingress.md's examples run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[2] / "docs" / "ingress.md").read_text()


def test_every_python_example_in_the_ingress_doc_runs() -> None:
    examples = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    assert examples
    for code in examples:
        exec(compile(code, "docs/ingress.md", "exec"), {"__name__": "ingress_doc_example"})
