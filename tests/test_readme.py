"""The README's example runs as written."""

from __future__ import annotations

import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys, tmp_path, monkeypatch):
    """Every python block in the README executes and prints a finite log p(x)."""
    monkeypatch.chdir(tmp_path)  # the examples write checkpoints and figures
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show a python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    value = float(re.search(r"first digit: (-?[\d.]+) nats", out).group(1))
    assert math.isfinite(value) and "local=True" in out


def test_readme_engine_table_is_the_registry():
    """The README's table of engines is exactly what the registry renders."""
    from ppl_lvm.inference.registry import markdown_table

    text = README.read_text()
    table = text.split("<!-- engines -->\n", 1)[1].split("\n<!-- /engines -->", 1)[0]
    assert table == markdown_table()
