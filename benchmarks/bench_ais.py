"""Annealed importance sampling on the mnist5k VAE: against IWAE-5000, and its BDMC bracket.

Issue 14's rows, in one run, on ``VAE(784, 20, (400,))`` trained with the ELBO for 20 epochs on
the 4,000 training digits of binarised mnist5k (split seed 0, as ``bench_vae``):

- AIS from the guide with T = 1,000 intermediate distributions on held-out digits against the
  5,000-particle importance estimate with the guide as proposal (the IWAE-5000 number): the
  target is AIS at or above it within 2 combined standard errors, i.e. the ratio
  (IWAE - AIS) / (2 SE) <= 1. Both are reported with their seconds.
- The bracket: on 100 digits simulated from the trained VAE, forward and reverse AIS from the
  guide; the gap per datum against T, drawn as a figure (``bench_out/ais_bracket.png``); the
  target is a gap of at most 1 nat per datum at the largest T.

The chains and the leapfrog steps are the cost on this machine's two cores: 16 chains and 10
leapfrog steps (Wu et al. 2017) would take hours here, so the run uses the 1,000 held-out
digits with 4 chains and 2 leapfrog steps per move (``AIS_HELD_OUT``, ``AIS_CHAINS`` and
``AIS_LEAPFROG`` in the environment change them).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from ppl_lvm import datasets, plots
from ppl_lvm.inference import SVI, AnnealedImportanceSampling, ImportanceSampling
from ppl_lvm.models import VAE

HELD_OUT = int(os.environ.get("AIS_HELD_OUT", "1000"))
CHAINS = int(os.environ.get("AIS_CHAINS", "4"))
LEAPFROG = int(os.environ.get("AIS_LEAPFROG", "2"))


def _trained(epochs: int) -> tuple[VAE, torch.Tensor]:
    train, test = datasets.load("mnist5k", binarize=True).split(test_size=1000, seed=0)
    torch.manual_seed(0)
    vae = VAE(784, 20, (400,), "bernoulli")
    SVI("elbo", lr=1e-3, batch_size=100).fit(vae, train.x, epochs=epochs, seed=0, progress=False)
    return vae, test.x


def _ais(steps: int) -> AnnealedImportanceSampling:
    return AnnealedImportanceSampling(
        "guide", num_steps=steps, num_chains=CHAINS, num_leapfrog=LEAPFROG, step_size=0.05
    )


def _nats_row(name, ours, ours_name, base, base_name, ratio, target, **extra) -> dict:
    return {
        "name": name,
        "ours_s": ours,
        "baseline": base_name,
        "baseline_s": base,
        "ratio": ratio,
        "target": target,
        "unit": "nats",
        "ours_label": ours_name,
        **extra,
    }


def run(quick: bool = False) -> list[dict]:
    vae, test = _trained(5 if quick else 20)
    held = test[: 20 if quick else HELD_OUT]
    steps = 100 if quick else 1000

    t0 = time.perf_counter()
    iw = ImportanceSampling("guide", num_particles=5000).log_evidence(vae, held, seed=0)
    t_iw = time.perf_counter() - t0
    t0 = time.perf_counter()
    ais = _ais(steps).log_evidence(vae, held, seed=0)
    t_ais = time.perf_counter() - t0
    n = len(held)
    ais_mean, iw_mean = ais.total / n, iw.total / n
    se = math.sqrt(ais.total_stderr**2 + iw.total_stderr**2) / n
    rows = [
        _nats_row(
            f"AIS (guide, T={steps}, C={CHAINS}, L={LEAPFROG}) vs IWAE-5000, mean log p(x) of "
            f"{n} held-out digits; ratio (IWAE - AIS) / (2 SE)",
            ais_mean,
            "AIS",
            iw_mean,
            "IWAE-5000",
            (iw_mean - ais_mean) / (2 * se),
            1.0,
            se=se,
        ),
        {
            "name": f"seconds: AIS T={steps} vs IWAE-5000 on {n} digits (reported)",
            "ours_s": t_ais,
            "baseline": "IWAE-5000",
            "baseline_s": t_iw,
            "ratio": t_ais / t_iw,
            "target": float("inf"),
            "unit": "s",
        },
    ]

    # the bracket against T, on data simulated from the trained VAE
    sizes = (10, 30, 100) if quick else (10, 30, 100, 300, 1000)
    simulated = 20 if quick else 100
    gaps, lowers, uppers = [], [], []
    for t in sizes:
        b = _ais(t).bracket(vae, simulated, seed=0)
        gaps.append(float(b.gap) / simulated)
        lowers.append(b.lower.total / simulated)
        uppers.append(b.upper.total / simulated)
    out = Path(os.environ.get("BENCH_OUT", "bench_out"))
    plots.bracket_curve(
        sizes,
        lowers,
        uppers,
        out / "ais_bracket.png",
        title=f"BDMC bracket, VAE(784, 20, (400,)), {simulated} simulated digits",
    )
    rows.append(
        _nats_row(
            f"BDMC gap per datum at T={sizes[-1]} on {simulated} simulated digits "
            f"(gaps {', '.join(f'{g:.2f}' for g in gaps)} at T={sizes})",
            gaps[-1],
            "gap",
            1.0,
            "the target",
            gaps[-1] / 1.0,
            1.0,
        )
    )
    return rows
