"""The model contract: site metadata, from_functions, parameter ownership."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from ppl_lvm.models import (
    LatentVariableModel,
    as_model,
    discrete_state_count,
    from_functions,
)


def mixed_model(x, mask=None):
    """A global weight, a local discrete label and a local continuous scale."""
    w = pyro.sample("w", dist.Dirichlet(torch.ones(3)))
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(w), infer={"enumerate": "parallel"})
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        lik = dist.Normal(c.float().unsqueeze(-1), s.unsqueeze(-1)).expand(c.shape + x.shape[-1:])
        if mask is not None:
            lik = lik.mask(mask)
        pyro.sample("x", lik.to_event(1), obs=x)


def test_site_metadata():
    """Sites report observed/latent, discrete/continuous, local/global and their sizes."""
    sites = from_functions(mixed_model).sites(torch.zeros(4, 2))
    assert list(sites) == ["w", "c", "s", "x"]
    w, c, s, x = (sites[k] for k in ("w", "c", "s", "x"))
    assert (w.latent, w.discrete, w.local, w.event_shape) == (True, False, False, (3,))
    assert (c.latent, c.discrete, c.local, c.num_states) == (True, True, True, 3)
    assert c.enumerate == "parallel" and c.elements_per_datum == 1
    assert (s.discrete, s.local, s.distribution) == (False, True, "LogNormal")
    assert x.observed and x.local and x.elements_per_datum == 2
    assert x.distribution == "Normal" and c.distribution == "Categorical"


def test_discrete_state_count_is_exact_for_thirty_binary_features():
    """30 local binary features give 2^30 joint states per datum, exactly."""

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(torch.full((30,), 0.5)).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    sites = from_functions(model).sites(torch.zeros(3, 1))
    assert sites["z"].num_states == 2 and sites["z"].elements_per_datum == 30
    assert discrete_state_count(sites) == 2**30 == 1_073_741_824
    assert discrete_state_count(from_functions(mixed_model).sites(torch.zeros(4, 2))) == 3


def test_state_count_none_for_infinite_support():
    """A Poisson latent has no finite joint space."""

    def model(x, mask=None):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Poisson(3.0))
            pyro.sample("x", dist.Normal(k, 1.0), obs=x[:, 0])

    assert discrete_state_count(from_functions(model).sites(torch.zeros(2, 1))) is None


def test_data_plate_may_sit_at_any_dim_and_must_be_sized_n():
    """A data plate at dim -2 (Pyro's HMM example) holds local sites; one of the wrong size
    is refused with the fix."""

    def other_dim(x, mask=None):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0], 1]), obs=x[:, :1])

    def wrong_size(x, mask=None):
        with pyro.plate("data", 7):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    assert from_functions(other_dim).sites(torch.zeros(3, 1))["x"].local
    with pytest.raises(ValueError, match="has size 7 .* x has 3 rows"):
        from_functions(wrong_size).sites(torch.zeros(3, 1))


def test_function_without_mask_parameter():
    """A model of x alone works unmasked and names the fix when a mask is given."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[:, 0])

    story = from_functions(model)
    assert story.sites(torch.zeros(2, 1))["x"].observed
    with pytest.raises(ValueError, match="takes no mask.*mask=None"):
        story.model(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool))


def test_story_without_guide():
    """has_guide is False and asking for guide sites names the engines that need none."""
    story = from_functions(mixed_model)
    assert not story.has_guide
    with pytest.raises(ValueError, match="has no guide.*Enumeration"):
        story.sites(torch.zeros(2, 2), which="guide")


def test_as_model_coercions():
    """Pairs and functions become models; anything else is a TypeError with the fix."""
    story = as_model((mixed_model, None))
    assert isinstance(story, LatentVariableModel) and story.name == "mixed_model"
    assert as_model(story) is story
    assert isinstance(as_model(mixed_model), LatentVariableModel)
    with pytest.raises(TypeError, match="from_functions"):
        as_model(42)
    with pytest.raises(TypeError, match=r"must be \(model_fn, guide_fn\)"):
        as_model((mixed_model, None, None))
    with pytest.raises(TypeError, match="guide_fn must be callable"):
        from_functions(mixed_model, "guide")


def _param_story(init):
    def model(x, mask=None):
        loc = pyro.param("loc", torch.tensor(init))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x[:, 0])

    return from_functions(model)


def test_function_stories_own_their_params():
    """Two stories using the same pyro.param name never share it, nor touch the global store."""
    a, b = _param_story(1.0), _param_story(-5.0)
    x = torch.zeros(3, 1)
    a.sites(x)
    b.sites(x)
    (pa,) = a.trainable_parameters()
    (pb,) = b.trainable_parameters()
    assert pa is not pb and pa.item() == 1.0 and pb.item() == -5.0
    with torch.no_grad():
        pa.add_(10.0)
    tr = a.trace(x)
    assert tr.nodes["loc"]["value"].item() == 11.0
    assert b.trace(x).nodes["loc"]["value"].item() == -5.0
    assert "loc" not in pyro.get_param_store()


class Scaled(LatentVariableModel):
    """A built-in style model with a constrained module parameter."""

    def __init__(self, scale):
        super().__init__()
        self.scale = PyroParam(torch.tensor(scale), constraint=constraints.positive)

    def model(self, x, mask=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, self.scale), obs=x[:, 0])

    def guide(self, x, mask=None):
        pass


def test_module_params_are_local():
    """Two instances of one PyroModule class keep separate parameters inside scoped()."""
    a, b = Scaled(2.0), Scaled(3.0)
    x = torch.zeros(2, 1)
    sa = a.trace(x).nodes["x"]["fn"].scale
    sb = b.trace(x).nodes["x"]["fn"].scale
    assert torch.allclose(sa, torch.tensor(2.0)) and torch.allclose(sb, torch.tensor(3.0))
    assert len(pyro.get_param_store()) == 0
    assert len(a.trainable_parameters()) == 1


def test_the_kept_look_follows_the_data_it_was_taken_of():
    """An engine call looks at the same data several times and keeps the last look; a story
    whose structure depends on the values sees new values, after an in-place change or in
    another tensor, and the look inside another Pyro handler is never reused."""
    import pyro.poutine as poutine

    calls = {"n": 0}

    def model(x, mask=None):
        calls["n"] += 1
        with pyro.plate("data", len(x)):
            if float(x.sum()) > 0:
                pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[:, 0])

    story = from_functions(model)
    x = torch.ones(3, 1)
    assert "z" in story.sites(x) and "z" in story.sites(x) and calls["n"] == 1
    x.mul_(-1)  # the same tensor, new values: a new look
    assert "z" not in story.sites(x) and calls["n"] == 2
    assert "z" in story.sites(torch.ones(3, 1)) and calls["n"] == 3
    with poutine.block():
        story.trace(torch.ones(3, 1))
        story.trace(torch.ones(3, 1))
    assert calls["n"] == 5
