"""Completing missing halves of mnist5k digits: pixel RMSE against scikit-learn's KNNImputer.

The example ``examples/missing_pixels.py`` is the benchmark: 4,000 training digits, 1,000
held-out digits with their top half removed (split seed 0). Each row is a model's RMSE over the
missing pixels against KNNImputer (k = 5) fitted on the same training digits, measured in the
same run; the ratio must be at most 1 for the models that learn from complete training digits.
The rows for models that learned from training digits that were themselves 50% missing at
random are reported without a target, as is mean imputation.
"""

from __future__ import annotations

import tempfile

import torch

from tests._helpers import load_example


def run(quick: bool = False) -> list[dict]:
    """RMSE rows from one run of the missing-pixels example (``--quick`` for a smoke run)."""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as out:
        argv = ["--out", out, "--seed", "0"] + (["--quick"] if quick else [])
        result = load_example("missing_pixels").main(argv)
    rmse = result["rmse"]
    knn = rmse["KNNImputer (k=5)"]
    rows = []
    for name, value in rmse.items():
        if name == "KNNImputer (k=5)":
            continue
        rows.append(
            {
                "name": f"top-half completion RMSE, {name} ({result['num_test']} test digits)",
                "ours_s": value,
                "baseline": "KNNImputer (k=5)",
                "baseline_s": knn,
                "ratio": value / knn,
                # the bar is for completions learned from complete training digits;
                # the rows for 50%-missing training digits and mean imputation are reported
                "target": 1.0 if "mean" not in name and "50%" not in name else float("inf"),
                "unit": "rmse",
            }
        )
    return rows
