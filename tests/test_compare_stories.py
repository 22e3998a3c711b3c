"""compare over several stories: log evidence, log Bayes factors with their SE, and LOO,
checked against closed forms and brute-force sums."""

from __future__ import annotations

import html
import math

import matplotlib.image as mpimg
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm import compare, models
from ppl_lvm.comparison import STORY_COLUMNS, Comparison, StoryComparison
from ppl_lvm.inference import SVI, AnnealedImportanceSampling, Enumeration, ImportanceSampling

pytestmark = pytest.mark.usefixtures("float64")

IS = "IS prior, K=2000"


# -- the stories and their exact answers -------------------------------------------------------
def normal_story(scale: float):
    """mu ~ N(0, scale²) shared by all data; x_n | mu ~ N(mu, 1)."""

    def model(x, mask=None):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0), scale))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    return model


def normal_exact(x: torch.Tensor, scale: float) -> tuple[float, float]:
    """log p(x) = log N(x; 0, I + scale² 11ᵀ), and the exact Σ_n log p(x_n | x_-n): the
    posterior of mu given the other N-1 data is N(m, 1/prec), so x_n | x_-n ~ N(m, 1 + 1/prec)."""
    n = x.shape[0]
    cov = torch.eye(n) + scale**2 * torch.ones(n, n)
    evidence = torch.distributions.MultivariateNormal(torch.zeros(n), cov).log_prob(x)
    prec = 1 / scale**2 + (n - 1)
    means = (x.sum() - x) / prec  # (N,)
    loo = dist.Normal(means, math.sqrt(1 + 1 / prec)).log_prob(x).sum()
    return float(evidence), float(loo)


def switch_story(p: float, m0: float, m1: float):
    """A global switch z ~ Bernoulli(p) picks the mean of every datum: x_n | z ~ N(m_z, 1)."""

    def model(x, mask=None):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(p)))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(m0 + (m1 - m0) * z, 1.0), obs=x)

    return model


def switch_exact(x: torch.Tensor, p: float, m0: float, m1: float) -> tuple[float, float]:
    """log p(x) = log Σ_z p(z) Π_n N(x_n; m_z, 1) by summing both states, and the exact
    Σ_n log Σ_z p(z | x_-n) N(x_n; m_z, 1)."""
    log_prior = torch.tensor([1 - p, p]).log()
    ll = dist.Normal(torch.tensor([m0, m1])[:, None], 1.0).log_prob(x)  # (2, N)
    evidence = torch.logsumexp(log_prior + ll.sum(1), 0)
    rest = log_prior[:, None] + ll.sum(1, keepdim=True) - ll  # (2, N): p(z, x_-n)
    loo = torch.logsumexp(torch.log_softmax(rest, 0) + ll, 0).sum()
    return float(evidence), float(loo)


SWITCHES = {"A": (0.3, 0.0, 0.5), "B": (0.5, 0.0, 1.0)}
SCALES = {"s=1": 1.0, "s=3": 3.0}


def _normal_data() -> torch.Tensor:
    return 0.5 + torch.randn(20, generator=torch.Generator().manual_seed(0))


def _switch_data() -> torch.Tensor:
    return torch.tensor([0.3, -0.4, 1.1, 0.6, 0.2, 0.9])


@pytest.fixture(scope="module")
def normal_table(tmp_path_factory):
    """Two Normal-Normal stories, Enumeration and IS with the prior, with a figure."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = tmp_path_factory.mktemp("stories")
        stories = {name: normal_story(s) for name, s in SCALES.items()}
        engines = [Enumeration(), ImportanceSampling("prior", num_particles=2000)]
        return compare(stories, _normal_data(), engines=engines, seed=0, out=out), out
    finally:
        torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def switch_table():
    """Two global-switch stories, Enumeration and IS with the prior, against story B."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        stories = {name: switch_story(*args) for name, args in SWITCHES.items()}
        engines = [Enumeration(), ImportanceSampling("prior", num_particles=2000)]
        return compare(stories, _switch_data(), engines=engines, seed=0, reference="B")
    finally:
        torch.set_default_dtype(old)


# -- continuous global latent: closed forms ----------------------------------------------------
def test_the_mapping_form_gives_one_row_per_story_and_engine(normal_table):
    """Rows run story by story, engines within; the single-story form still gives Comparison."""
    table, _ = normal_table
    assert isinstance(table, StoryComparison)
    assert table.stories == ("s=1", "s=3") and table.engines == ("Enumeration", IS)
    assert [(r["story"], r["engine"]) for r in table.rows] == [
        ("s=1", "Enumeration"),
        ("s=1", IS),
        ("s=3", "Enumeration"),
        ("s=3", IS),
    ]
    assert set(table.rows[0]) == {k for k, _ in STORY_COLUMNS}
    single = compare(normal_story(1.0), _normal_data(), engines=["is-prior"])
    assert isinstance(single, Comparison)


def test_enumeration_refuses_the_continuous_global_as_a_note(normal_table):
    """Enumeration's rows say why (the continuous site mu); their numbers are all None."""
    table, _ = normal_table
    assert set(table.refused) == {("s=1", "Enumeration"), ("s=3", "Enumeration")}
    for story in SCALES:
        row = table.row(story, "Enumeration")
        assert "continuous latent sites ['mu']" in row["note"]
        assert row["kind"] is row["estimate"] is row["log_bf"] is row["elpd_loo"] is None
        assert table.evidence[story, "Enumeration"] is None
    assert "refused" in str(table)


def test_importance_totals_are_within_four_standard_errors_of_the_closed_form(normal_table):
    """IS with the prior: each story's joint log p(x) within 4 SE of log N(x; 0, I + s² 11ᵀ);
    the SE is the joint estimate's own 0-dim stderr."""
    table, _ = normal_table
    for story, scale in SCALES.items():
        row, ev = table.row(story, IS), table.evidence[story, IS]
        exact, _ = normal_exact(_normal_data(), scale)
        assert row["kind"] == "estimate" and not ev.factorises
        assert row["stderr"] == pytest.approx(float(ev.stderr), rel=1e-12) and row["stderr"] > 0
        assert abs(row["estimate"] - exact) <= 4 * row["stderr"]


def test_log_bayes_factor_is_within_four_combined_standard_errors(normal_table):
    """log BF of the wider prior against the best story is total_a - total_b with SE
    sqrt(se_a² + se_b²), and lies within 4 of those SEs of the exact difference."""
    table, _ = normal_table
    exact = {s: normal_exact(_normal_data(), scale)[0] for s, scale in SCALES.items()}
    assert exact["s=1"] > exact["s=3"]  # the Occam penalty of a wide prior on mu
    assert table.best == {IS: "s=1"}
    best, other = table.row("s=1", IS), table.row("s=3", IS)
    assert best["reference"] == other["reference"] == "s=1"
    assert best["log_bf"] == 0.0 and best["log_bf_se"] == 0.0
    assert other["log_bf"] == pytest.approx(other["estimate"] - best["estimate"], rel=1e-12)
    assert other["log_bf_se"] == pytest.approx(math.hypot(other["stderr"], best["stderr"]))
    assert abs(other["log_bf"] - (exact["s=3"] - exact["s=1"])) <= 4 * other["log_bf_se"]
    value, se = table.log_bayes_factor("s=1", "s=3", IS)
    assert value == pytest.approx(-other["log_bf"]) and se == pytest.approx(other["log_bf_se"])


def test_loo_matches_the_exact_leave_one_out_predictive(normal_table):
    """PSIS-LOO of the resampled IS draws of mu lands on Σ_n log p(x_n | x_-n), written out in
    closed form (within 0.3 nats: Monte Carlo error of 2000 weighted draws), with k̂ < 0.7."""
    table, _ = normal_table
    for story, scale in SCALES.items():
        row = table.row(story, IS)
        _, exact_loo = normal_exact(_normal_data(), scale)
        assert row["elpd_loo"] == pytest.approx(exact_loo, abs=0.3)
        assert row["loo_se"] > 0 and row["loo_khat"] < 0.7 and row["loo_note"] is None


def test_figure_is_saved_and_opens(normal_table):
    """With out=..., compare_stories.png is written there and opens as an image."""
    table, out = normal_table
    assert table.figure == out / "compare_stories.png" and table.figure.exists()
    img = mpimg.imread(table.figure)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 400


# -- discrete global latent: exact sums --------------------------------------------------------
def test_enumeration_bayes_factor_is_exact(switch_table):
    """Enumeration's totals and log BF (against reference B) equal the brute-force sums to
    1e-6, with zero standard errors."""
    exact = {s: switch_exact(_switch_data(), *args)[0] for s, args in SWITCHES.items()}
    for story in SWITCHES:
        row = switch_table.row(story, "Enumeration")
        assert row["kind"] == "exact" and row["stderr"] == 0.0
        assert row["estimate"] == pytest.approx(exact[story], abs=1e-6)
        assert row["reference"] == "B" and row["log_bf_se"] == 0.0
        assert row["log_bf"] == pytest.approx(exact[story] - exact["B"], abs=1e-6)


def test_importance_bayes_factor_against_the_exact_one(switch_table):
    """IS with the prior: log BF of A against B within 4 combined SE of the exact one."""
    exact = {s: switch_exact(_switch_data(), *args)[0] for s, args in SWITCHES.items()}
    row = switch_table.row("A", IS)
    assert row["log_bf_se"] > 0
    assert abs(row["log_bf"] - (exact["A"] - exact["B"])) <= 4 * row["log_bf_se"]


def test_loo_of_a_two_state_posterior_is_right_but_undiagnosed(switch_table):
    """Two states give ArviZ no tail to fit: k̂ is n/a and the note says so, while elpd_loo
    still matches the exact Σ_n log Σ_z p(z | x_-n) p(x_n | z) within 0.05."""
    for story, args in SWITCHES.items():
        row = switch_table.row(story, "Enumeration")
        _, exact_loo = switch_exact(_switch_data(), *args)
        assert row["elpd_loo"] == pytest.approx(exact_loo, abs=0.05)
        assert math.isnan(row["loo_khat"])
        assert "could not be fitted for 6 of 6 data" in row["loo_note"]


def test_a_refused_reference_leaves_the_bayes_factor_empty_with_a_note():
    """Against a reference the engine refused, the other story's row says why it has no BF."""
    stories = {"switch": switch_story(*SWITCHES["A"]), "normal": normal_story(1.0)}
    table = compare(stories, _switch_data(), engines=["enumeration"], reference="normal")
    row = table.row("switch", "Enumeration")
    assert row["kind"] == "exact" and row["log_bf"] is None
    assert "reference story 'normal' has no exact or estimated log p(x)" in row["bf_note"]
    with pytest.raises(ValueError, match="story 'normal' has no exact or estimated"):
        table.log_bayes_factor("switch", "normal", "Enumeration")


# -- point estimates, lower bounds, the bracket hook -------------------------------------------
def test_point_estimate_mixture_loo_is_its_exact_evidence_and_bounds_give_no_factor():
    """With point estimates every draw scores a datum alike: elpd_loo is Σ_n log p(x_n), the
    exact evidence, with a note; an ELBO row gets no Bayes factor, and a note why."""
    one = models.GaussianMixture(2, num_components=1).double()
    one.set_parameters(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    two = models.GaussianMixture(2, num_components=2).double()
    two.set_parameters(
        torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0], [1, 0]]), torch.ones(2, 2)
    )
    x = torch.randn(15, 2, generator=torch.Generator().manual_seed(2))
    table = compare({"K=1": one, "K=2": two}, x, engines=["enumeration", "elbo"])
    for story in ("K=1", "K=2"):
        row = table.row(story, "Enumeration")
        assert row["elpd_loo"] == pytest.approx(row["estimate"], abs=1e-9)
        assert math.isnan(row["loo_khat"]) and "same log-likelihood" in row["loo_note"]
        elbo = table.row(story, "SVI elbo, K=100")
        assert elbo["kind"] == "lower_bound" and elbo["log_bf"] is None
        assert "no Bayes factor from lower bounds" in elbo["bf_note"]
    exact_k1 = float(dist.Normal(0.0, 1.0).log_prob(x).sum())
    assert table.row("K=1", "Enumeration")["estimate"] == pytest.approx(exact_k1, abs=1e-9)


def test_an_ais_bracket_becomes_columns_and_an_interval(tmp_path):
    """A story's BDMC bracket (AIS on data simulated from it) puts its gap, per datum and
    scaled to these data, above that story's AIS estimate; other rows leave the columns empty,
    and the figure draws the interval."""
    stories = {name: normal_story(s) for name, s in SCALES.items()}
    x = _normal_data()
    engine = AnnealedImportanceSampling(num_steps=30, num_chains=8, step_size=0.3)
    brackets = {"s=1": engine.bracket(stories["s=1"], 10, like=x, seed=0)}
    table = compare(
        stories, x, engines=[engine, "is-prior"], out=tmp_path, loo=False, brackets=brackets
    )
    row = table.row("s=1", engine.label)
    gap = float(brackets["s=1"].gap) / 10 * len(x)
    assert row["lower"] == pytest.approx(row["estimate"], abs=1e-12)
    assert row["upper"] == pytest.approx(row["estimate"] + max(gap, 0.0), abs=1e-12)
    assert table.row("s=3", engine.label)["lower"] is None
    assert table.row("s=1", "IS prior, K=1000")["lower"] is None
    assert "bracket lower" in str(table)
    assert mpimg.imread(table.figure).ndim == 3
    with pytest.raises(ValueError, match="names story 'nope'"):
        compare(stories, x, engines=[engine], brackets={"nope": brackets["s=1"]})
    with pytest.raises(ValueError, match="not a Bracket"):
        compare(stories, x, engines=[engine], brackets={"s=1": 3.0})


# -- reproducibility, options, tables ----------------------------------------------------------
def test_same_seed_same_numbers():
    """A fixed seed reproduces every number, LOO included; another seed moves the estimates."""
    stories = {name: normal_story(s) for name, s in SCALES.items()}
    keys = ("estimate", "stderr", "log_bf", "log_bf_se", "elpd_loo", "loo_se")

    def numbers(seed):
        table = compare(stories, _normal_data(), engines=["is-prior"], seed=seed)
        return [[r[k] for k in keys] for r in table.rows]

    assert numbers(4) == numbers(4)
    assert numbers(4)[0][0] != numbers(5)[0][0]


def test_loo_false_draws_no_posterior():
    """loo=False leaves every LOO cell empty, without a note."""
    stories = {name: normal_story(s) for name, s in SCALES.items()}
    table = compare(stories, _normal_data(), engines=["is-prior"], loo=False)
    assert all(r["elpd_loo"] is None and r["loo_note"] is None for r in table.rows)
    assert "elpd_loo" not in str(table)  # empty columns are left out of the printout


def test_tables_carry_every_column_and_number_each_note_once(normal_table):
    """to_html and to_markdown have every header and one row per (story, engine); the printout
    numbers a repeated note once."""
    table, _ = normal_table
    page = table.to_html()
    for _, header in STORY_COLUMNS:
        assert f"<th>{html.escape(header)}</th>" in page
    assert page.count("<tr>") == 1 + len(table.rows)
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| story | engine | log p(x) |") and len(md) == 2 + len(table.rows)
    assert table.to_pandas().shape == (len(table.rows), len(STORY_COLUMNS))
    text = str(table)
    assert text.count("UnsupportedModelError") == 1 and "[2]" not in text


# -- bad input ---------------------------------------------------------------------------------
def test_an_empty_mapping_says_what_to_pass():
    """An empty mapping raises ValueError naming the problem and the fix."""
    with pytest.raises(ValueError, match=r"empty mapping of stories; pass \{name: story\}"):
        compare({}, _normal_data())


def test_a_reference_that_names_no_story_lists_the_stories():
    """reference must be one of the names; the message lists them."""
    stories = {name: normal_story(s) for name, s in SCALES.items()}
    with pytest.raises(ValueError, match=r"reference='s=2' names no story.*\['s=1', 's=3'\]"):
        compare(stories, _normal_data(), engines=["is-prior"], reference="s=2")


@pytest.mark.parametrize("option", [{"reference": "a"}, {"loo": True}])
def test_story_options_with_one_story_point_to_the_mapping(option):
    """reference and loo=True belong to the mapping form; with one story, a ValueError says so."""
    with pytest.raises(ValueError, match=r"pass a mapping \{name: story\}"):
        compare(normal_story(1.0), _normal_data(), engines=["is-prior"], **option)


def test_non_story_values_and_names_are_refused_before_any_work():
    """Any value that is no story (fuzzed), and any name that is no string, raise ValueError
    naming the story and what to give instead, before an engine runs."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    bad_values = st.one_of(
        st.none(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.tuples(st.integers(), st.integers()),
        st.just((normal_story(1.0), None, None)),
        st.just((normal_story(1.0), 3)),
        st.just(torch.zeros(3)),
        st.just(torch.nn.Linear(2, 2)),
        st.just(SVI()),
    )

    @hypothesis.settings(max_examples=60, deadline=None, database=None)
    @hypothesis.given(bad_values)
    def check(value):
        stories = {"good": normal_story(1.0), "bad": value}
        with pytest.raises(ValueError, match=r"story 'bad' is a \w+, not a story; give a"):
            compare(stories, _normal_data(), engines=["is-prior"])

    check()
    with pytest.raises(ValueError, match="story names must be non-empty strings, got 3"):
        compare({3: normal_story(1.0)}, _normal_data())
