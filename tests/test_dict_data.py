"""The data contract: ``x`` a dict of tensors that share N, ``mask`` a dict for some keys, and
masked discrete observations filled inside their support.

Every number is compared with an exact answer: a brute-force sum over the discrete latent, a
conjugate Gaussian marginal, or the exact marginal over the observed entries only.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_lvm import compare, models
from ppl_lvm.core.checks import check_data
from ppl_lvm.core.data import fill_masked, num_data, take_rows, width
from ppl_lvm.inference import SVI, Enumeration, ImportanceSampling

pytestmark = pytest.mark.usefixtures("float64")

K, D, C = 3, 2, 4
PI = [0.2, 0.5, 0.3]
LOC = [[-2.0, 0.0], [0.0, 1.5], [2.5, -1.0]]
PROBS_C = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.3, 0.6]]


def _masks(mask):
    mask = mask or {}
    return mask.get("y"), mask.get("c")


def mixture(x, mask=None):
    """A mixture over a dict: Gaussian features ``y`` (N, D) and a Categorical code ``c`` (N,)
    (integers), both depending on the label z; either may be masked by key."""
    y, c = x["y"], x["c"]
    my, mc = _masks(mask)  # None: fully observed
    pi, loc, probs_c = torch.tensor(PI), torch.tensor(LOC), torch.tensor(PROBS_C)
    with pyro.plate("data", len(c)):
        z = pyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})
        pyro.sample(
            "y", dist.Normal(loc[z], 1.0).mask(True if my is None else my).to_event(1), obs=y
        )
        pyro.sample("c", dist.Categorical(probs_c[z]).mask(True if mc is None else mc), obs=c)


def _mixture_data():
    g = torch.Generator().manual_seed(1)
    n = 7
    y = torch.randn(n, D, generator=g, dtype=torch.float64) * 2
    c = torch.randint(0, C, (n,), generator=g)
    my = torch.ones(n, D, dtype=torch.bool)
    my[1, 0] = my[3] = my[5, 1] = False
    y[~my] = float("nan")  # a masked entry is never read
    return {"y": y, "c": c}, my


def _brute_force(x, my, mc=None) -> torch.Tensor:
    """log p(x_n) per datum: log Σ_z p(z) p(observed y_n | z) p(c_n | z), written out."""
    pi, loc, probs_c = torch.tensor(PI), torch.tensor(LOC), torch.tensor(PROBS_C)
    out = []
    for n in range(len(x["c"])):
        terms = []
        for k in range(K):
            t = math.log(PI[k])
            for d in range(D):
                if my[n, d]:
                    t += float(dist.Normal(loc[k, d], 1.0).log_prob(x["y"][n, d]))
            if mc is None or mc[n]:
                t += math.log(float(probs_c[k, int(x["c"][n])]))
            terms.append(t)
        out.append(torch.logsumexp(torch.tensor(terms), 0))
    assert pi.sum() == pytest.approx(1.0)
    return torch.stack(out)


def test_enumeration_on_a_dict_with_a_partial_mask_dict_is_the_brute_force_sum():
    """Enumeration's log p(x_n) of a dict x, masked for the key "y" only (the integer codes
    "c" fully observed), equals the sum over z written out by hand."""
    x, my = _mixture_data()
    story = models.from_functions(mixture)
    ev = Enumeration().log_evidence(story, x, {"y": my})
    assert ev.kind == "exact"
    torch.testing.assert_close(ev.per_datum, _brute_force(x, my), atol=1e-10, rtol=0)


def test_a_masked_categorical_code_is_filled_inside_its_support():
    """Masked codes that hold -1 (outside the Categorical's support) are filled from an
    observed datum, so the story scores, and log p(x_n) drops their term exactly."""
    x, my = _mixture_data()
    mc = torch.ones(len(x["c"]), dtype=torch.bool)
    mc[[0, 4]] = False
    x["c"] = torch.where(mc, x["c"], torch.tensor(-1))
    story = models.from_functions(mixture)
    ev = Enumeration().log_evidence(story, x, {"y": my, "c": mc})
    torch.testing.assert_close(ev.per_datum, _brute_force(x, my, mc), atol=1e-10, rtol=0)


def onehot_story(x, mask=None):
    """A label seen as a one-hot vector (N, C), the semi-supervised VAE's way: a masked row is
    no label at all, and the label drives a Gaussian feature."""
    seen = None if mask is None or "label" not in mask else mask["label"].all(-1)
    with pyro.plate("data", len(x["f"])):
        z = pyro.sample("z", dist.Categorical(torch.tensor(PI)), infer={"enumerate": "parallel"})
        pyro.sample(
            "label", dist.OneHotCategorical(torch.tensor(PROBS_C)[z]).mask(seen), obs=x["label"]
        )
        pyro.sample("f", dist.Normal(torch.tensor(LOC)[z, 0], 1.0), obs=x["f"])


def test_a_masked_one_hot_observation_equals_the_exact_marginal_over_observed_data():
    """A masked OneHotCategorical row (NaN in the data) used to arrive as zeros, outside the
    support; now every engine scores the story, and Enumeration equals log Σ_z p(z)
    p(f_n | z) [p(label_n | z) where seen]."""
    g = torch.Generator().manual_seed(3)
    n = 6
    labels = torch.randint(0, C, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, C).double()
    f = torch.randn(n, generator=g, dtype=torch.float64)
    seen = torch.tensor([True, False, True, True, False, True])
    onehot[~seen] = float("nan")
    x, mask = {"label": onehot, "f": f}, {"label": seen[:, None].expand(n, C).clone()}
    story = models.from_functions(onehot_story)
    exact = []
    for i in range(n):
        terms = [
            math.log(PI[k])
            + float(dist.Normal(LOC[k][0], 1.0).log_prob(f[i]))
            + (math.log(PROBS_C[k][int(labels[i])]) if seen[i] else 0.0)
            for k in range(K)
        ]
        exact.append(torch.logsumexp(torch.tensor(terms), 0))
    exact = torch.stack(exact)
    ev = Enumeration().log_evidence(story, x, mask)
    torch.testing.assert_close(ev.per_datum, exact, atol=1e-10, rtol=0)
    # importance sampling from the prior: an estimate within 4 standard errors (seed 0)
    est = ImportanceSampling("prior", 4000).log_evidence(story, x, mask, seed=0)
    assert abs(est.total - float(exact.sum())) <= 4 * est.total_stderr + 1e-9


def test_fill_takes_a_fully_observed_datum_then_column_values_then_zero():
    """Masked entries take the first fully observed row's values; with none, each column's
    first observed value; 0 in a column with nothing observed."""
    x = torch.tensor([[9.0, 9.0, 9.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    m = torch.tensor([[False, False, False], [True, True, True], [True, False, True]])
    torch.testing.assert_close(
        fill_masked(x, m), torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    )
    m2 = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    x2 = torch.tensor([[9.0, 5.0, 9.0], [4.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    torch.testing.assert_close(
        fill_masked(x2, m2), torch.tensor([[4.0, 5.0, 0.0], [4.0, 5.0, 0.0], [4.0, 5.0, 0.0]])
    )
    # a dict: each key filled on its own, unmasked keys untouched, NaN gone
    y = torch.tensor([[float("nan")], [2.0]])
    out, mask = check_data(
        {"y": y, "c": torch.tensor([3, 1])}, {"y": torch.tensor([[False], [True]])}
    )
    torch.testing.assert_close(out["y"], torch.tensor([[2.0], [2.0]]))
    assert torch.equal(out["c"], torch.tensor([3, 1]))
    assert set(mask) == {"y"}
    # what the built-in models take (LatentVariableModel.masked_fill = "zero")
    zeroed, _ = check_data(x, m, fill="zero")
    torch.testing.assert_close(zeroed, torch.where(m, x, 0.0))
    assert models.GaussianMixture(2, num_components=2).masked_fill == "zero"
    assert models.from_functions(mixture).masked_fill == "observed"


def gaussian(x, mask=None):
    """z_n ~ N(0, 1), y_n ~ N(z_n, sigma_n): each datum's known noise travels with it."""
    my = True if mask is None else mask.get("y", True)
    with pyro.plate("data", len(x["y"])):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(z, x["sigma"]).mask(my), obs=x["y"])


def exact_posterior(x, mask=None):
    """The exact posterior N(y s⁻²/(1 + s⁻²), 1/(1 + s⁻²)), the prior where y is masked."""
    my = None if mask is None else mask.get("y")
    prec = 1.0 + x["sigma"] ** -2
    loc, scale = x["y"] / x["sigma"] ** 2 / prec, prec**-0.5
    if my is not None:
        loc, scale = torch.where(my, loc, 0.0), torch.where(my, scale, 1.0)
    with pyro.plate("data", len(x["y"])):
        pyro.sample("z", dist.Normal(loc, scale))


def _gaussian_data():
    y = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4])
    sigma = torch.tensor([0.5, 1.0, 2.0, 0.8, 1.5])
    return {"y": y, "sigma": sigma}


def _gaussian_exact(x, mask=None):
    per = dist.Normal(0.0, (1 + x["sigma"] ** 2).sqrt()).log_prob(x["y"].nan_to_num())
    return per if mask is None else torch.where(mask["y"], per, 0.0)


def test_importance_sampling_on_a_dict_with_the_exact_posterior_is_exact():
    """With the exact posterior as proposal every weight is p(y_n): the IS estimate on a dict
    equals N(y_n; 0, 1 + sigma_n²), and 0 where y_n is masked (sigma_n is never masked)."""
    x = _gaussian_data()
    mask = {"y": torch.tensor([True, True, False, True, True])}
    x["y"] = torch.where(mask["y"], x["y"], float("nan"))
    story = models.from_functions(gaussian, exact_posterior)
    ev = ImportanceSampling("guide", 50).log_evidence(story, x, mask, seed=0)
    torch.testing.assert_close(ev.per_datum, _gaussian_exact(x, mask), atol=1e-10, rtol=0)
    prior = ImportanceSampling("prior", 4000).log_evidence(story, x, mask, seed=0)
    assert abs(prior.total - float(_gaussian_exact(x, mask).sum())) <= 4 * prior.total_stderr


def test_to_arviz_has_one_observed_variable_per_key_with_nan_where_masked():
    """``observed_data`` holds each key of a dict x as its own variable, NaN where masked."""
    x = _gaussian_data()
    mask = {"y": torch.tensor([True, False, True, True, True])}
    story = models.from_functions(gaussian, exact_posterior)
    post = ImportanceSampling("guide", 100).posterior(story, x, mask, seed=0)
    idata = post.to_arviz()
    obs = idata.observed_data
    assert set(obs.data_vars) == {"y", "sigma"}
    assert torch.isnan(torch.as_tensor(obs["y"].values)).tolist() == (~mask["y"]).tolist()
    torch.testing.assert_close(torch.as_tensor(obs["sigma"].values), x["sigma"])
    assert idata.log_likelihood["x"].shape[-1] == 5


def aligned(x, mask=None):
    """A story that checks its rows: "twice" must be twice "index" in every row it is given,
    so a minibatch that mixed rows of different keys would fail here."""
    if not torch.equal(x["twice"], 2 * x["index"]):
        raise RuntimeError("the rows of x['index'] and x['twice'] were not taken together")
    loc = pyro.param("loc", torch.tensor(0.0))
    with pyro.plate("data", len(x["index"])):
        z = pyro.sample("z", dist.Normal(loc, 1.0))
        pyro.sample("obs", dist.Normal(z, 1.0), obs=x["twice"].double())


def aligned_guide(x, mask=None):
    q = pyro.param("q", torch.tensor(0.0))
    with pyro.plate("data", len(x["index"])):
        pyro.sample("z", dist.Normal(q, 1.0))


def test_svi_minibatches_take_the_same_rows_of_every_key():
    """SVI with minibatches on a dict (integer and float entries) hands the story the same rows
    of each key, and the fit takes loc to the ELBO's optimum, the mean of the data."""
    n = 10
    index = torch.arange(n)
    x = {"index": index, "twice": 2 * index}
    story = models.from_functions(aligned, aligned_guide)
    fit = SVI("elbo", num_particles=4, batch_size=3, lr=0.1).fit(story, x, epochs=100, seed=0)
    assert fit.num_steps == 100 * math.ceil(n / 3)
    assert torch.isfinite(fit.history).all()
    with story.scoped():
        loc = float(pyro.param("loc").detach())
    # the ELBO, -(q - loc)²/2 - (obs_n - q)²/2 per datum, peaks at loc = q = mean(obs) = 9;
    # Adam at lr 0.1 on noisy minibatch gradients ends within a few tenths of it (seed 0)
    assert abs(loc - 9.0) < 0.5, loc
    # and log_evidence (chunked by the memory budget) sees aligned rows too
    assert math.isfinite(SVI("elbo", num_particles=4).log_evidence(story, x, seed=0).total)


def test_compare_on_a_dict_counts_its_data():
    """compare takes a dict x: N is the shared first dimension, and Enumeration's row is exact."""
    x, my = _mixture_data()
    table = compare(models.from_functions(mixture), x, {"y": my}, engines=["enumeration"])
    assert table.num_data == 7
    assert table.rows[0]["estimate"] == pytest.approx(float(_brute_force(x, my).sum()), abs=1e-8)


def test_row_helpers_keep_keys_together():
    """take_rows takes the same rows of every key; num_data and width read a dict."""
    x = {"a": torch.arange(6).reshape(3, 2), "b": torch.arange(3)}
    rows = take_rows(x, torch.tensor([2, 0]))
    assert rows["a"].tolist() == [[4, 5], [0, 1]] and rows["b"].tolist() == [2, 0]
    assert num_data(x) == 3 and width(x) == 3
    assert take_rows(None, slice(0, 1)) is None


BAD = [
    ({"y": torch.zeros(3, 2), "c": torch.zeros(4)}, None, ValueError, "share their first dim"),
    (
        {"y": torch.zeros(3)},
        {"z": torch.ones(3, dtype=torch.bool)},
        ValueError,
        "keys .'z'. that x lacks",
    ),
    ({"y": torch.zeros(3)}, {"y": torch.ones(3)}, TypeError, "mask of x.'y'. must be a bool"),
    (
        {"y": torch.zeros(3)},
        {"y": torch.ones(2, dtype=torch.bool)},
        ValueError,
        "mask of x.'y'. has shape",
    ),
    ({"y": torch.tensor([0.0, float("nan")])}, None, ValueError, "torch.isfinite"),
    ({"y": torch.zeros(3, dtype=torch.float16)}, None, TypeError, "too narrow"),
    (
        {"y": torch.zeros(3)},
        torch.ones(3, dtype=torch.bool),
        TypeError,
        "give a dict of bool masks",
    ),
    (
        torch.zeros(3),
        {"y": torch.ones(3, dtype=torch.bool)},
        TypeError,
        "dict mask goes with a dict",
    ),
    ({}, None, ValueError, "empty dict"),
    ({"y": [1.0, 2.0]}, None, TypeError, "must be a torch.Tensor"),
    ({"y": torch.tensor(1.0)}, None, ValueError, "scalar"),
    (torch.zeros(3, dtype=torch.long), None, TypeError, "floating point"),
]


@pytest.mark.parametrize(("x", "mask", "error", "match"), BAD)
def test_malformed_dict_data_is_refused_with_the_fix(x, mask, error, match):
    """Each malformed input names its problem and its fix, before any engine work."""
    with pytest.raises(error, match=match):
        check_data(x, mask)
    with pytest.raises(error, match=match):
        Enumeration().log_evidence(models.from_functions(mixture), x, mask)


def test_built_in_models_refuse_a_dict_with_the_fix():
    """A built-in model takes one (N, D) tensor; a dict is refused, naming from_functions."""
    gmm = models.GaussianMixture(2, num_components=2)
    with pytest.raises(TypeError, match="not a dict.*from_functions"):
        Enumeration().log_evidence(gmm, {"x": torch.zeros(3, 2)})


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DTYPES = (torch.float32, torch.float64, torch.int64, torch.bool, torch.float16)


@st.composite
def dict_data(draw):
    """(x, mask): one to three keys, N shared or not, dtypes (float16 among them), NaN in
    observed or masked entries, masks by key (some keys unknown, some not bool, some of the
    wrong shape)."""
    n = draw(st.integers(1, 4))
    x, mask = {}, {}
    for key in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        rows = n if draw(st.booleans()) or key == "a" else draw(st.integers(1, 4))
        shape = (rows,) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        dtype = draw(st.sampled_from(DTYPES))
        values = torch.randint(0, 3, shape).to(dtype)
        m = torch.rand(shape) < draw(st.sampled_from([0.0, 0.5, 1.0]))
        if dtype.is_floating_point and draw(st.booleans()):
            values[torch.rand(shape) < 0.3] = float("nan")
        kind = draw(st.sampled_from(["none", "ok", "ok", "float", "shape"]))
        if kind == "ok":
            mask[key] = m
        elif kind == "float":
            mask[key] = m.double()
        elif kind == "shape":
            mask[key] = torch.ones(shape[0] + 1, dtype=torch.bool)
        x[key] = values
    if draw(st.integers(0, 5)) == 0:
        mask["zz"] = torch.ones(n, dtype=torch.bool)
    return x, (mask or None)


@FUZZ
@given(dict_data())
def test_any_dict_is_refused_with_a_message_or_checked_and_filled(case):
    """Either a TypeError or ValueError whose message names x or the mask, or data that share
    N, keep every observed entry and hold no NaN anywhere."""
    x, mask = case
    try:
        out, out_mask = check_data(x, mask)
    except (TypeError, ValueError) as err:
        assert "x" in str(err) or "mask" in str(err), err
        return
    assert len({v.shape[0] for v in out.values()}) == 1
    for key, value in out.items():
        m = None if out_mask is None else out_mask.get(key)
        observed = torch.ones_like(value, dtype=torch.bool) if m is None else m
        assert torch.equal(value[observed], x[key][observed])
        if value.is_floating_point():
            assert not torch.isnan(value).any()
            assert value.dtype in (torch.float32, torch.float64)
