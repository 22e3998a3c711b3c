"""Importance-sampling benchmark: log p(x) with K=1,000 particles for one image on
``VAE(784, 20, (400,))``.

Baselines measured in the same run:
- ``pyro.infer.Importance(model, guide, num_samples=K).run(x).get_log_normalizer()``, which
  loops over particles in Python (target: ours at least 30x faster, ratio <= 1/30);
- a hand-written vectorised torch estimate: encoder once, K reparameterised draws, decoder on
  all of them, logsumexp (target: ratio <= 1.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.infer import Importance

from ppl_lvm import datasets, models
from ppl_lvm.inference import ImportanceSampling

from ._timing import best_time, row

K = 1000


def _hand_written(vae: models.VAE, x: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k p(x, z_k) / q(z_k | x) in plain torch, one vectorised pass."""
    h = vae.encoder(x)
    loc, raw = h.split(vae.latent_dim, -1)
    scale = F.softplus(raw) + 1e-5
    z = loc + scale * torch.randn(K, *loc.shape)
    log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = vae.decoder(z)
    log_lik = -F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
    return torch.logsumexp(log_prior + log_lik - log_q, 0) - math.log(K)


_MEMORY_SCRIPT = """
import resource, torch
from ppl_lvm import datasets, models
from ppl_lvm.inference import ImportanceSampling
torch.set_num_threads(2)
x = datasets.load("mnist5k", binarize=True).x[:N]
vae = models.VAE(784, 20, (400,), "bernoulli")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    ImportanceSampling("guide", num_particles=5000).log_evidence(vae, x, khat=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 2**20)
"""


def _peak_gib(num_images: int) -> float:
    """Extra peak resident memory (GiB) of a K=5,000 estimate for ``num_images`` images, in a
    fresh process so that nothing else counts."""
    import subprocess
    import sys

    script = _MEMORY_SCRIPT.replace("N]", f"{num_images}]")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    """The two ratios for one mnist5k test image."""
    torch.set_num_threads(2)
    x = datasets.load("mnist5k", binarize=True).x[:1]
    torch.manual_seed(0)
    vae = models.VAE(784, 20, (400,), "bernoulli")
    vae.initialize(x, None, seed=0)
    engine = ImportanceSampling("guide", num_particles=K)
    repeat = 3 if quick else 7

    def ours():
        with torch.no_grad():
            return engine.log_evidence(vae, x, seed=None, khat=False)

    def ours_with_khat():
        with torch.no_grad():
            return engine.log_evidence(vae, x, seed=None)

    def hand():
        with torch.no_grad():
            return _hand_written(vae, x)

    def pyro_importance():
        with torch.no_grad(), vae.scoped():
            return Importance(vae.model, vae.guide, num_samples=K).run(x).get_log_normalizer()

    t_ours = best_time(ours, repeat)
    t_khat = best_time(ours_with_khat, repeat)
    t_hand = best_time(hand, repeat)
    t_pyro = best_time(pyro_importance, 1 if quick else 2)
    est = float(ours().per_datum[0])
    # memory is set by the chunk (about 17 images of 5,000 particles), not by N: two chunks
    # already reach the peak that 1,000 images would
    peak = _peak_gib(40 if not quick else 20)
    return [
        row(
            "IS log p(x), K=1000, one image, VAE(784,20,(400,))",
            t_ours,
            "pyro.infer.Importance",
            t_pyro,
            1 / 30,
            speedup=t_pyro / t_ours,
            estimate=est,
        ),
        row(
            "IS log p(x), K=1000, one image (no k-hat)",
            t_ours,
            "hand-written vectorised torch",
            t_hand,
            1.2,
        ),
        row(
            "IS log p(x), K=1000, one image (with ArviZ k-hat)",
            t_khat,
            "hand-written vectorised torch",
            t_hand,
            1.2,
        ),
        {
            "name": "peak extra memory, K=5000 particles, chunked (GiB)",
            "ours_s": peak,
            "baseline": "2 GiB budget",
            "baseline_s": 2.0,
            "ratio": peak / 2.0,
            "target": 1.0,
            "unit": "GiB",
        },
    ]
