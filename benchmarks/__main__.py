"""Run every ``benchmarks/bench_*.py`` and print their ratio tables.

Each benchmark module defines ``run(quick: bool) -> list[dict]``; a row holds at least
``name``, ``ours_s``, ``baseline``, ``baseline_s``, ``ratio`` and ``target``. Results also go
to ``bench_out/results.json`` so a closing note can quote them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", default=None, help="run benchmarks whose name contains this")
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args(argv)
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if args.only in n]
    if not names:
        print("no benchmarks yet: add benchmarks/bench_<topic>.py with run(quick) -> rows")
        return 0
    rows = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        for row in module.run(quick=args.quick):
            rows.append({"module": name, **row})
            ok = "ok " if row["ratio"] <= row["target"] else "MISS"
            unit = row.get("unit", "ms")
            scale = 1e3 if unit == "ms" else 1.0
            print(
                f"  [{ok}] {row['name']}: {row['ours_s'] * scale:.3g} {unit} vs {row['baseline']} "
                f"{row['baseline_s'] * scale:.3g} {unit} -> ratio {row['ratio']:.3f} "
                f"(target <= {row['target']:.3g})",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
