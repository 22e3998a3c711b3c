"""The architecture holds: small modules, layers that point one way, no capability probes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ppl_lvm"
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_500_lines(path):
    """Every module of the package has at most 500 lines."""
    assert len(path.read_text().splitlines()) <= 500


def test_no_hasattr_probes_of_models_or_engines():
    """Engines and workflows ask declared capabilities (models.capabilities.has), never hasattr."""
    offenders = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in MODULES
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bhasattr\(", line)
    ]
    assert offenders == []


def test_import_contracts_are_kept():
    """lint-imports (a test dependency) finds every layer contract of pyproject.toml kept."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(exe)], cwd=PACKAGE.parent, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def test_every_registered_engine_has_the_shared_signatures():
    """fit, log_evidence and posterior take the same leading arguments in every engine."""
    import inspect

    from ppl_lvm import inference

    expected = {
        "fit": ["model", "x", "mask", "seed", "progress"],
        "log_evidence": ["model", "x", "mask", "seed"],
        "posterior": ["model", "x", "mask", "num_samples", "seed"],
    }
    for name in inference.available():
        engine = inference.create(name)
        for method, params in expected.items():
            got = list(inspect.signature(getattr(engine, method)).parameters)
            assert got[: len(params)] == params, (name, method, got)
