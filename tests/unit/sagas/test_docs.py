"""The examples in docs/sagas.md run, in order, sharing one namespace."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_python_examples_in_the_saga_docs_run() -> None:
    text = (ROOT / "docs" / "sagas.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for code in blocks:
        exec(compile(code, "docs/sagas.md", "exec", dont_inherit=True), namespace)
