"""Rao–Blackwellised importance sampling from the prior: ``ImportanceSampling("prior")`` on a
story that marks discrete sites ``infer={"enumerate": "parallel"}`` draws only the other latent
sites from the prior and sums the marked ones exactly inside each weight.

Exact or independent references: a 1-D quadrature over the one global of a toy story, the
catalogue's closed form for the GMM tutorial with priors, and plain Monte Carlo over the prior
of the globals with every hidden path (HMM) or word topic (LDA) summed by brute force, in
code that shares nothing with ppl_lvm.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import stories
import torch
from pyro import poutine
from stories import _exact

from ppl_lvm import models
from ppl_lvm.inference import SVI, ImportanceSampling, UnsupportedModelError

pytestmark = pytest.mark.usefixtures("float64")


def log_mean_and_se(log_w: torch.Tensor) -> tuple[float, float]:
    """log mean exp of (M,) log weights and its delta-method standard error."""
    w = (log_w - log_w.max()).exp()
    mean = w.mean()
    return float(mean.log() + log_w.max()), float(w.std() / (math.sqrt(len(w)) * mean))


def plain(model):
    """The story with its enumerate marks removed: every latent drawn from the prior."""
    return poutine.infer_config(model, config_fn=lambda site: {"enumerate": None})


# -- a global mean and a local sign: exact by 1-D quadrature ------------------------------------
def signed_mean(x, mask=None):
    """mu ~ N(0, 1) shared; z_n ~ Bernoulli(1/2) a sign; x_n ~ N(mu (2 z_n - 1), 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(mu * (2 * z - 1), 1.0), obs=x)


SIGNED_X = torch.tensor([1.5, -2.0, 1.8, 0.3, -1.1, 2.4], dtype=torch.float64)


def signed_mean_exact(x: torch.Tensor, points: int) -> float:
    """log p(x) = log ∫ N(mu; 0, 1) Π_n ½ [N(x_n; mu, 1) + N(x_n; -mu, 1)] dmu, trapezoidal
    rule on [-12, 12] with ``points`` nodes."""
    grid = torch.linspace(-12.0, 12.0, points, dtype=torch.float64)
    log_f = dist.Normal(0.0, 1.0).log_prob(grid)
    for xn in x.to(torch.float64):
        both = torch.logaddexp(
            dist.Normal(grid, 1.0).log_prob(xn), dist.Normal(-grid, 1.0).log_prob(xn)
        )
        log_f = log_f + both - math.log(2.0)
    return float(_exact.log_trapezoid(log_f, grid))


def test_the_signs_are_summed_and_the_estimate_meets_the_quadrature():
    """The Rao–Blackwellised estimate lies within 4 SE of the exact log p(x) (a trapezoidal
    rule converged to 1e-10: 24,001 and 240,001 nodes agree), and its SE is under a third of
    the plain prior estimate's at the same K and seed (measured: 0.012 against 0.088)."""
    exact = signed_mean_exact(SIGNED_X, 240_001)
    assert abs(exact - signed_mean_exact(SIGNED_X, 24_001)) < 1e-10
    engine = ImportanceSampling("prior", num_particles=2000)
    rb = engine.log_evidence(models.from_functions(signed_mean), SIGNED_X, seed=0)
    naive = engine.log_evidence(models.from_functions(plain(signed_mean)), SIGNED_X, seed=0)
    assert rb.per_datum is None and rb.stderr.dim() == 0
    assert abs(rb.total - exact) < 4 * float(rb.stderr)
    assert abs(naive.total - exact) < 4 * float(naive.stderr)
    assert float(rb.stderr) < float(naive.stderr) / 3


def test_the_posterior_draws_the_signs_from_their_exact_conditional():
    """Weighted draws: mu from the prior with one joint weight per particle, z drawn given
    each mu; weights are log p(x | mu) with z summed (the same numbers as log_evidence)."""
    story = models.from_functions(signed_mean)
    engine = ImportanceSampling("prior", num_particles=300)
    post = engine.posterior(story, SIGNED_X, seed=0)
    assert post.samples["mu"].shape == (300,) and post.samples["z"].shape == (300, 6)
    assert post.log_weights.shape == (300,)
    # log p(x | mu) with the signs summed, written out
    mu = post.samples["mu"][:, None]
    both = torch.logaddexp(
        dist.Normal(mu, 1.0).log_prob(SIGNED_X), dist.Normal(-mu, 1.0).log_prob(SIGNED_X)
    )
    assert torch.allclose(post.log_weights, (both - math.log(2.0)).sum(-1), atol=1e-10)
    ev = engine.log_evidence(story, SIGNED_X, seed=0)
    assert ev.total == pytest.approx(float(torch.logsumexp(post.log_weights, 0)) - math.log(300))


def test_the_same_seed_gives_the_same_evidence():
    """Reproducible with the same seed; another seed draws other globals."""
    story = models.from_functions(signed_mean)
    engine = ImportanceSampling("prior", num_particles=200)
    a, b = (engine.log_evidence(story, SIGNED_X, seed=3) for _ in range(2))
    c = engine.log_evidence(story, SIGNED_X, seed=4)
    assert a.total == b.total and float(a.stderr) == float(b.stderr)
    assert a.total != c.total


# -- a drawn site that depends on an enumerated one: refused -------------------------------------
def sign_then_offset(x, mask=None):
    """mu ~ N(0, 1); z_n ~ Bernoulli(1/2) marked; y_n ~ N(2 z_n - 1, 1) drawn after z_n and
    depending on it; x_n ~ N(mu + y_n, 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        y = pyro.sample("y", dist.Normal(2 * z - 1, 1.0))
        pyro.sample("x", dist.Normal(mu + y, 1.0), obs=x)


def sign_then_offset_guide(x, mask=None):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("y", dist.Normal(x / 2, 1.0))


def test_a_drawn_site_that_depends_on_an_enumerated_one_is_refused_with_advice():
    """y's prior changes with the enumerated z, so the prior of the drawn sites is no density
    of the draws alone: refused before any work, naming y, z and the engines that, with a
    guide for both, accept the story."""
    story = models.from_functions(sign_then_offset, sign_then_offset_guide)
    with pytest.raises(UnsupportedModelError) as info:
        ImportanceSampling("prior", 50).log_evidence(story, SIGNED_X)
    message = str(info.value)
    assert "'y'" in message and "'z'" in message
    assert "ImportanceSampling(proposal='guide')" in message and "SVI" in message
    with pytest.raises(UnsupportedModelError):
        ImportanceSampling("prior", 50).posterior(story, SIGNED_X)
    ev = ImportanceSampling("guide", 200).log_evidence(story, SIGNED_X, seed=0)
    assert math.isfinite(ev.total) and math.isfinite(float(ev.stderr))
    assert math.isfinite(SVI("elbo", num_particles=10).log_evidence(story, SIGNED_X).total)
    # without the mark, every latent is drawn from the prior, as before
    naive = ImportanceSampling("prior", 200).log_evidence(
        models.from_functions(plain(sign_then_offset)), SIGNED_X, seed=0
    )
    assert math.isfinite(naive.total)


def test_a_story_whose_every_latent_is_marked_keeps_plain_prior_draws():
    """Nothing left to draw: the lecture's naive Monte Carlo over the label stays, per datum
    (Enumeration gives the exact sum)."""

    def mixture(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)

    ev = ImportanceSampling("prior", 100).log_evidence(models.from_functions(mixture), SIGNED_X)
    assert ev.per_datum.shape == (6,) and torch.all(ev.stderr > 0)


# -- the GMM tutorial with priors: the catalogue's closed form ----------------------------------
def test_the_gmm_tutorial_with_priors_meets_its_exact_evidence():
    """tutorial/source/gmm.ipynb's model as the catalogue keeps it (``gmm_tutorial_map``:
    weights ~ Dirichlet, scale ~ LogNormal, locs ~ Normal, assignment enumerated): the
    Rao–Blackwellised estimate lies within 4 SE of the exact log p(x) (every parameter
    integrated out). The plain prior estimate at K = 2000 sits 17 of its own SEs below it
    (-19.29 ± 0.12 against -17.13: its weights are too heavy-tailed for its SE)."""
    module = stories.load("gmm_tutorial_map")
    x = module.data()
    exact = module.exact_log_evidence(x)
    ev = ImportanceSampling("prior", num_particles=1000).log_evidence(
        stories.build(module), x, seed=0
    )
    assert ev.per_datum is None and ev.stderr.dim() == 0
    assert abs(ev.total - exact) < 4 * float(ev.stderr)


# -- a Bayesian HMM: examples/hmm.py's model_1 with its priors -----------------------------------
ARGS = SimpleNamespace(hidden_dim=2, jit=False)


def model_1(sequences, lengths, args, batch_size=None, include_prior=True):
    """Pyro's ``examples/hmm.py``, ``model_1``, as written there (priors on probs_x, probs_y).

    Source: pyro-ppl/pyro, ``examples/hmm.py``. What the contract made us change:
    ``ignore_jit_warnings`` is dropped (no jit); the story is called through
    :func:`bayesian_hmm`, which unpacks ``x = {"sequences", "lengths"}``; sizes are 2 hidden
    states, 2 tones, 4 sequences of at most 3 steps (the example: 16, 88, the JSB chorales).
    """
    num_sequences, max_length, data_dim = map(int, sequences.shape)
    assert lengths.shape == (num_sequences,)
    assert lengths.max() <= max_length
    with poutine.mask(mask=include_prior):
        probs_x = pyro.sample(
            "probs_x",
            dist.Dirichlet(0.9 * torch.eye(args.hidden_dim) + 0.1).to_event(1),
        )
        probs_y = pyro.sample(
            "probs_y",
            dist.Beta(0.1, 0.9).expand([args.hidden_dim, data_dim]).to_event(2),
        )
    tones_plate = pyro.plate("tones", data_dim, dim=-1)
    with pyro.plate("sequences", num_sequences, batch_size, dim=-2) as batch:
        lengths = lengths[batch]
        x = 0
        for t in pyro.markov(range(max_length if args.jit else lengths.max())):
            with poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                x = pyro.sample(
                    f"x_{t}",
                    dist.Categorical(probs_x[x]),
                    infer={"enumerate": "parallel"},
                )
                with tones_plate:
                    pyro.sample(
                        f"y_{t}",
                        dist.Bernoulli(probs_y[x.squeeze(-1)]),
                        obs=sequences[batch, t],
                    )


def bayesian_hmm(x, mask=None):
    return model_1(x["sequences"], x["lengths"], ARGS)


HMM_DATA = {
    "sequences": torch.tensor(
        [
            [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]],
            [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
            [[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
        ],
        dtype=torch.float64,
    ),
    "lengths": torch.tensor([3, 2, 3]),
}


def hmm_path_sums(x: dict, probs_x: torch.Tensor, probs_y: torch.Tensor) -> torch.Tensor:
    """log p(sequences | probs_x, probs_y) for M draws (M, H, H) and (M, H, D): every hidden
    path of every sequence summed by brute force, started from state 0 as model_1 starts (M,)."""
    h = probs_x.shape[-1]
    total = torch.zeros(probs_x.shape[0], dtype=torch.float64)
    for seq, length in zip(x["sequences"], x["lengths"].tolist(), strict=True):
        paths = []
        for path in itertools.product(range(h), repeat=length):
            lp, prev = torch.zeros_like(total), 0
            for t, state in enumerate(path):
                emit = torch.distributions.Bernoulli(probs=probs_y[:, state]).log_prob(seq[t])
                lp = lp + probs_x[:, prev, state].log() + emit.sum(-1)
                prev = state
            paths.append(lp)
        total = total + torch.logsumexp(torch.stack(paths), 0)
    return total


def hmm_reference(x: dict, num_draws: int, seed: int) -> tuple[float, float]:
    """Plain Monte Carlo over the prior of (probs_x, probs_y) with the paths summed by brute
    force: log p(x) and its delta-method SE."""
    h, d = ARGS.hidden_dim, x["sequences"].shape[-1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        conc = (0.9 * torch.eye(h) + 0.1).to(torch.float64)
        probs_x = torch.distributions.Dirichlet(conc).sample((num_draws,))  # (M, H, H)
        beta = torch.distributions.Beta(torch.tensor(0.1).double(), torch.tensor(0.9).double())
        probs_y = beta.sample((num_draws, h, d))  # (M, H, D)
    return log_mean_and_se(hmm_path_sums(x, probs_x, probs_y))


def prior_of_the_globals(x, mask=None):
    """A guide that draws model_1's globals from their priors."""
    h, d = ARGS.hidden_dim, x["sequences"].shape[-1]
    pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(h) + 0.1).to_event(1))
    pyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([h, d]).to_event(2))


def test_each_hmm_weight_is_the_brute_force_sum_over_hidden_paths():
    """Each particle's weight is log p(sequences | probs_x, probs_y) with every path summed,
    the same for the prior proposal and a guide that draws the priors (the sequences plate
    sits at dim -2: each sequence keeps its own sum)."""
    for proposal, guide in (("prior", None), ("guide", prior_of_the_globals)):
        story = models.from_functions(bayesian_hmm, guide, data_plate="sequences")
        post = ImportanceSampling(proposal, num_particles=5).posterior(story, HMM_DATA, seed=0)
        exact = hmm_path_sums(HMM_DATA, post.samples["probs_x"], post.samples["probs_y"])
        assert torch.allclose(post.log_weights, exact, atol=1e-9), proposal


def test_a_bayesian_hmm_gets_an_evidence_that_meets_brute_force_paths():
    """The hidden states are summed inside each weight (probs_x, probs_y drawn from their
    priors): one finite joint evidence with a 0-dim SE, reproducible under the same seed,
    within 4 combined SE of plain Monte Carlo over the priors with every path summed by
    brute force (200,000 draws), with a smaller SE than drawing the states too (measured
    at K = 300: 0.24 against 0.64)."""
    story = models.from_functions(bayesian_hmm, data_plate="sequences")
    engine = ImportanceSampling("prior", num_particles=500)
    ev = engine.log_evidence(story, HMM_DATA, seed=0)
    assert ev.per_datum is None and ev.stderr.dim() == 0 and math.isfinite(ev.total)
    ref, ref_se = hmm_reference(HMM_DATA, 200_000, seed=1)
    assert abs(ev.total - ref) < 4 * math.hypot(float(ev.stderr), ref_se)
    naive_story = models.from_functions(plain(bayesian_hmm), data_plate="sequences")
    naive = engine.log_evidence(naive_story, HMM_DATA, seed=0)
    assert float(ev.stderr) < float(naive.stderr)
    small = ImportanceSampling("prior", num_particles=20)
    a, b = (small.log_evidence(story, HMM_DATA, seed=5) for _ in range(2))
    assert a.total == b.total and float(a.stderr) == float(b.stderr)


# -- a small LDA: examples/lda.py as the catalogue keeps it --------------------------------------
def lda_reference(x: torch.Tensor, num_draws: int, seed: int) -> tuple[float, float]:
    """Plain Monte Carlo over the prior of topic weights, topic words and document topics,
    each word's topic summed exactly: p(w_di | θ_d, φ) = Σ_k θ_dk φ_k,w_di."""
    args = stories.load("lda_small").ARGS
    words = x.long()  # (documents, words per document)
    totals = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(num_draws // 50_000):
            m = 50_000
            k, v = args.num_topics, args.num_words
            gamma = torch.distributions.Gamma(
                torch.full((k,), 1.0 / k, dtype=torch.float64), torch.tensor(1.0).double()
            )
            topic_weights = gamma.sample((m,))  # (M, K)
            topic_words = torch.distributions.Dirichlet(
                torch.full((k, v), 1.0 / v, dtype=torch.float64)
            ).sample((m,))  # (M, K, V)
            doc_topics = torch.distributions.Dirichlet(topic_weights[:, None, :]).sample(
                (args.num_docs,)
            )  # (docs, M, 1, K)
            doc_topics = doc_topics[:, :, 0].transpose(0, 1)  # (M, docs, K)
            # φ_k,w for every word of every document: (M, K, docs, words)
            phi = topic_words[:, :, words]
            per_word = (doc_topics.transpose(1, 2)[..., None] * phi).sum(1)  # (M, docs, words)
            totals.append(per_word.log().sum((-1, -2)))
    return log_mean_and_se(torch.cat(totals))


def test_a_small_lda_gets_an_evidence_that_meets_plain_monte_carlo():
    """The catalogue's lda_small (examples/lda.py): the word topics are summed inside each
    weight; one finite joint evidence with a 0-dim SE, reproducible under the same seed,
    within 4 combined SE of plain Monte Carlo over the priors with the topics summed in
    closed form (400,000 draws)."""
    module = stories.load("lda_small")
    x = module.data()
    story = stories.build(module)
    ev = ImportanceSampling("prior", num_particles=1000).log_evidence(story, x, seed=0)
    assert ev.per_datum is None and ev.stderr.dim() == 0 and math.isfinite(ev.total)
    small = ImportanceSampling("prior", num_particles=20)
    a, b = (small.log_evidence(story, x, seed=5) for _ in range(2))
    assert a.total == b.total and float(a.stderr) == float(b.stderr)
    ref, ref_se = lda_reference(x, 400_000, seed=1)
    assert abs(ev.total - ref) < 4 * math.hypot(float(ev.stderr), ref_se)
