"""compare: one story, every engine, side by side; checked against exact and closed forms."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm import models
from ppl_lvm.comparison import COLUMNS, Comparison, compare
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling, available

pytestmark = pytest.mark.usefixtures("float64")


def _mixture():
    """A 2-component diagonal mixture in 2-D with known parameters, and 20 data from it."""
    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.4, 0.6])
    means = torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    variances = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    z = (torch.rand(20, generator=g) < weights[1]).long()
    x = means[z] + variances[z].sqrt() * torch.randn(20, 2, generator=g)
    gmm = (
        models.GaussianMixture(2, num_components=2)
        .double()
        .set_parameters(weights, means, variances)
    )
    # log p(x) = Σ_n log Σ_k π_k N(x_n; μ_k, diag σ²_k), written out without the package
    comp = dist.Normal(means, variances.sqrt()).log_prob(x[:, None, :]).sum(-1)  # (N, K)
    closed = float(torch.logsumexp(comp + weights.log(), -1).sum())
    return gmm, x, closed


def _model(x, mask=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])


def _guide(x, mask=None):
    # the posterior is N(x/2, 1/2); a unit variance keeps the weights bounded but not constant
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x[:, 0] / 2, 1.0))


def _conjugate():
    """Normal-Normal data and their exact log p(x) = Σ_n log N(x_n; 0, 2)."""
    g = torch.Generator().manual_seed(1)
    x = math.sqrt(2.0) * torch.randn(20, 1, generator=g)
    return x, float(dist.Normal(0.0, math.sqrt(2.0)).log_prob(x[:, 0]).sum())


@pytest.fixture(scope="module")
def mixture_table():
    """Enumeration, IS with the prior and ELBO on the mixture (computed once)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        gmm, x, closed = _mixture()
        engines = [Enumeration(), ImportanceSampling(proposal="prior", num_particles=2000), "elbo"]
        return compare(gmm, x, engines=engines, seed=3), gmm, x, closed
    finally:
        torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def conjugate_table(tmp_path_factory):
    """Every named engine on a user's (model_fn, guide_fn) pair, with a figure."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, closed = _conjugate()
        out = tmp_path_factory.mktemp("compare")
        return compare((_model, _guide), x, seed=0, out=out, title="Normal-Normal"), closed, out
    finally:
        torch.set_default_dtype(old)


def test_enumeration_row_is_exact_and_matches_the_closed_form(mixture_table):
    """The Enumeration row is exact, equals Enumeration().log_evidence and the written-out sum."""
    table, gmm, x, closed = mixture_table
    row = table.row("Enumeration")
    assert row["kind"] == "exact" and row["note"] is None
    ev = Enumeration().log_evidence(gmm, x)
    assert row["estimate"] == pytest.approx(ev.total, rel=1e-12)
    assert row["estimate"] == pytest.approx(closed, rel=1e-10)
    assert row["mean"] == pytest.approx(closed / 20, rel=1e-10)
    assert table.exact == row["estimate"]
    assert row["seconds"] > 0


def test_importance_prior_row_is_within_four_standard_errors(mixture_table):
    """IS with the prior lands within 4 SE of the exact total, with ESS and k̂ recorded."""
    table, _, _, closed = mixture_table
    row = table.row("IS prior, K=2000")
    assert row["kind"] == "estimate"
    assert 0 < row["stderr"] < 1.0
    assert abs(row["estimate"] - closed) <= 4 * row["stderr"]
    # the table reports the engine's own median ESS for the same seed
    _, gmm, x, _ = mixture_table
    ev = ImportanceSampling(proposal="prior", num_particles=2000).log_evidence(gmm, x, seed=3)
    assert row["ess"] == pytest.approx(float(ev.ess.median()), rel=1e-9)
    # two components give two distinct weights per datum: no tail to fit, so k̂ is n/a
    assert math.isnan(row["khat"])
    assert "n/a" in str(table)


def test_elbo_of_the_enumerated_mixture_is_its_exact_value(mixture_table):
    """SVI sums the enumerated z inside each weight (TraceEnum_ELBO's meaning); with the
    mixture's empty guide over point estimates the bound is tight: the exact log p(x)."""
    table, gmm, x, _ = mixture_table
    row = table.row("SVI elbo, K=100")
    exact = Enumeration().log_evidence(gmm, x).total
    assert row["kind"] == "lower_bound"
    assert row["estimate"] == pytest.approx(exact, abs=1e-6)
    assert table.refused == {}


def test_user_story_refusals_are_rows_not_exceptions(conjugate_table):
    """Enumeration and the uniform proposal refuse the continuous z; the others all answer."""
    table, _, _ = conjugate_table
    assert [r["engine"] for r in table.rows] == [
        "Enumeration",
        "IS prior, K=1000",
        "IS uniform, K=1000",
        "IS guide, K=1000",
        "SVI elbo, K=100",
        "SVI iwae, K=100",
        "SVI meanfield, K=1",
        "AIS prior, T=200, C=16",
    ]
    assert set(table.refused) == {"Enumeration", "IS uniform, K=1000"}
    assert "continuous local latent site 'z'" in table.row("Enumeration")["note"]
    assert table.exact is None
    assert "refused [1]" in str(table) and "[2] UnsupportedModelError" in str(table)


@pytest.mark.parametrize(
    "engine", ["IS prior, K=1000", "IS guide, K=1000", "AIS prior, T=200, C=16"]
)
def test_user_story_estimates_match_the_closed_form(conjugate_table, engine):
    """On x_i ~ N(0, 2), IS with the prior or the guide, and AIS from the prior, are within
    4 SE of the exact log p(x)."""
    table, closed, _ = conjugate_table
    row = table.row(engine)
    assert row["kind"] == "estimate"
    assert abs(row["estimate"] - closed) <= 4 * row["stderr"]
    assert row["khat"] is not None and row["ess"] > 10


def test_guide_proposal_beats_the_prior(conjugate_table):
    """A guide near the posterior gives a smaller SE, a larger ESS and a reliable k̂ (< 0.7)."""
    table, _, _ = conjugate_table
    prior, guide = table.row("IS prior, K=1000"), table.row("IS guide, K=1000")
    assert guide["stderr"] < prior["stderr"]
    assert guide["ess"] > prior["ess"]
    assert guide["khat"] < 0.7


def test_elbo_row_is_a_lower_bound_below_the_truth(conjugate_table):
    """The ELBO row is a lower bound with no SE, below log p(x) by about the summed KL."""
    table, closed, _ = conjugate_table
    elbo, iwae = table.row("SVI elbo, K=100"), table.row("SVI iwae, K=100")
    assert elbo["kind"] == iwae["kind"] == "lower_bound"
    assert elbo["stderr"] is None and elbo["ess"] is None
    # KL(N(m, 1) ‖ N(m, 1/2)) = log √½ + 1 − ½ ≈ 0.153 per datum, 3.07 over 20
    assert closed - elbo["estimate"] == pytest.approx(20 * (0.5 - 0.5 * math.log(2)), abs=1.0)
    assert iwae["estimate"] > elbo["estimate"] + 2


def test_figure_is_saved_and_readable(conjugate_table):
    """With out=..., compare.png is written there and opens as an image."""
    table, _, out = conjugate_table
    assert table.figure == out / "compare.png"
    img = mpimg.imread(table.figure)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300


def test_no_out_means_no_figure(tmp_path):
    """Without out, nothing is written; plot() draws the same figure on demand."""
    x, _ = _conjugate()
    table = compare((_model, _guide), x, engines=["is-prior"])
    assert table.figure is None
    path = table.plot(tmp_path / "sub" / "c.png")
    assert mpimg.imread(path).ndim == 3


def test_html_and_markdown_tables_carry_every_column(conjugate_table):
    """to_html is a <table> with every header and one row per engine; to_markdown too."""
    table, _, _ = conjugate_table
    page = table.to_html()
    assert page.startswith("<table") and page.endswith("</table>")
    for _, header in COLUMNS:
        assert f"<th>{header}</th>" in page
    assert page.count("<tr>") == 1 + len(table.rows)
    assert "&#x27;z&#x27;" in page  # the refusal message is escaped
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| engine | estimate |") and len(md) == 2 + len(table.rows)
    assert table.to_pandas().shape == (len(table.rows), len(COLUMNS))


def test_bad_engine_name_lists_the_valid_ones():
    """An unknown name raises ValueError naming every valid name; a non-engine, TypeError."""
    x, _ = _conjugate()
    with pytest.raises(ValueError, match="unknown engine name 'is_prior'") as info:
        compare((_model, _guide), x, engines=["is_prior"])
    for name in available():
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="Engine instance or a name"):
        compare((_model, _guide), x, engines=[SVI])


def test_same_seed_same_numbers_and_duplicates_are_labelled():
    """A fixed seed reproduces every number; two identical engines get distinct labels."""
    x, _ = _conjugate()
    a = compare((_model, _guide), x, engines=["is-guide", "is-guide"], seed=5)
    b = compare((_model, _guide), x, engines=["is-guide"], seed=5)
    assert [r["engine"] for r in a.rows] == ["IS guide, K=1000", "IS guide, K=1000 #2"]
    assert a.rows[0]["estimate"] == a.rows[1]["estimate"] == b.rows[0]["estimate"]
    assert isinstance(a, Comparison)
