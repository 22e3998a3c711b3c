"""One constructor convention for every model, ``(dim, <latent size>, ...)`` with sizes named
``num_*``, and the previous release's mixture spellings still working with a FutureWarning."""

from __future__ import annotations

import warnings

import pytest
import torch

from ppl_lvm import models
from ppl_lvm.inference import Enumeration


def _same(a: models.MixtureModel, b: models.MixtureModel) -> None:
    assert type(a) is type(b)
    assert (a.dim, a.num_components, a.num_init, a.bayesian) == (
        b.dim,
        b.num_components,
        b.num_init,
        b.bayesian,
    )
    for attr in ("covariance", "reg_covar", "num_categories", "eps"):
        assert getattr(a, attr, None) == getattr(b, attr, None)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key])
    assert repr(a) == repr(b)


@pytest.mark.parametrize(
    "build, dim, k",
    [
        (lambda: models.GaussianMixture(64, num_components=10), 64, 10),
        (lambda: models.GaussianMixture(dim=64, num_components=10, covariance="full"), 64, 10),
        (lambda: models.BernoulliMixture(5, num_components=3), 5, 3),
        (lambda: models.CategoricalMixture(dim=5, num_components=3, num_categories=4), 5, 3),
    ],
)
def test_new_spelling_builds_without_warning(build, dim, k):
    """dim first (positional or keyword), the component count by keyword: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build()
        assert (model.dim, model.num_components, model.num_init) == (dim, k, 1)
    assert f"dim={dim}, num_components={k}" in repr(model)


@pytest.mark.parametrize(
    "legacy, new, message",
    [
        (
            lambda: models.GaussianMixture(10, 64),
            lambda: models.GaussianMixture(64, num_components=10),
            r"GaussianMixture\(n_components, dim\) is deprecated; "
            r"write GaussianMixture\(dim=64, num_components=10\)",
        ),
        (
            lambda: models.GaussianMixture(10, 64, "full"),
            lambda: models.GaussianMixture(64, num_components=10, covariance="full"),
            r"write GaussianMixture\(dim=64, num_components=10, covariance='full'\)",
        ),
        (
            lambda: models.GaussianMixture(10, dim=64),
            lambda: models.GaussianMixture(64, num_components=10),
            r"write GaussianMixture\(dim=64, num_components=10\)",
        ),
        (
            lambda: models.GaussianMixture(n_components=10, dim=64),
            lambda: models.GaussianMixture(64, num_components=10),
            r"write GaussianMixture\(num_components=10\)",
        ),
        (
            lambda: models.GaussianMixture(64, num_components=10, n_init=3),
            lambda: models.GaussianMixture(64, num_components=10, num_init=3),
            r"write GaussianMixture\(num_init=3\)",
        ),
        (
            lambda: models.BernoulliMixture(3, 5),
            lambda: models.BernoulliMixture(5, num_components=3),
            r"write BernoulliMixture\(dim=5, num_components=3\)",
        ),
        (
            lambda: models.CategoricalMixture(3, 5, 4),
            lambda: models.CategoricalMixture(5, num_components=3, num_categories=4),
            r"write CategoricalMixture\(dim=5, num_components=3, num_categories=4\)",
        ),
        (
            lambda: models.CategoricalMixture(3, 5, num_categories=4),
            lambda: models.CategoricalMixture(5, num_components=3, num_categories=4),
            r"write CategoricalMixture\(dim=5, num_components=3, num_categories=4\)",
        ),
    ],
)
def test_legacy_spelling_warns_and_builds_the_same_model(legacy, new, message):
    """The old order and keywords warn with FutureWarning naming the new spelling."""
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match=message):
        old = legacy()
    torch.manual_seed(0)
    _same(old, new())


def test_legacy_order_and_keyword_together_warn_for_each():
    """GaussianMixture(10, 64, "diag", n_init=2): both renamings are named."""
    with pytest.warns(FutureWarning) as record:
        old = models.GaussianMixture(10, 64, "diag", n_init=2)
    text = " ".join(str(w.message) for w in record)
    assert "num_init=2" in text and "dim=64, num_components=10" in text
    _same(old, models.GaussianMixture(64, num_components=10, covariance="diag", num_init=2))


def test_legacy_attributes_warn_and_alias_the_new_ones():
    """.n_components and .n_init read (and .n_init writes) the new attributes, with a warning."""
    gmm = models.GaussianMixture(4, num_components=3, num_init=2)
    with pytest.warns(FutureWarning, match=r"GaussianMixture\.n_components is deprecated; use "):
        assert gmm.n_components == 3
    with pytest.warns(FutureWarning, match=r"\.n_init is deprecated; use \.num_init"):
        assert gmm.n_init == 2
    with pytest.warns(FutureWarning, match=r"\.n_init is deprecated"):
        gmm.n_init = 5
    assert gmm.num_init == 5


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: models.GaussianMixture(64), "num_components"),
        (lambda: models.GaussianMixture(10, 64, num_components=3), "multiple values"),
        (lambda: models.GaussianMixture(64, n_components=3, num_components=3), "got both"),
        (lambda: models.GaussianMixture(10, 64, "full", 1e-3), "1 positional argument"),
    ],
)
def test_ambiguous_or_conflicting_calls_are_refused(call, pattern):
    """A missing size, a size given twice, or too many positionals: TypeError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy order warns before refusing
        with pytest.raises(TypeError, match=pattern):
            call()


def test_num_init_is_honoured():
    """An engine's fit runs num_init restarts from the model."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 4]).double()
    gmm = models.GaussianMixture(2, num_components=2, num_init=3).double()
    fit = Enumeration().fit(gmm, x, method="em", max_steps=20, seed=0)
    assert len(fit.info["restarts"]) == 3
    one = models.GaussianMixture(2, num_components=2).double()
    assert len(Enumeration().fit(one, x, method="em", max_steps=20, seed=0).info["restarts"]) == 1
