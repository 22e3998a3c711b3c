"""ENGINES × STORIES: every story of the catalogue (``tests/stories``) through every engine.

Each story says, engine by engine, what a correct engine must give (``stories.OUTCOMES``): the
exact log p(x), an estimate or a bound consistent with it, or a refusal whose advice names an
engine that accepts the story. The expectations are Pyro's own (``Trace_ELBO``,
``TraceEnum_ELBO``) or the closed form's, not today's behaviour: a case that fails today is a
strict xfail whose reason says what goes wrong, so it turns red once the bug is fixed.

Three parametrised tests:

- ``test_log_evidence``: ``log_evidence`` against ``exact_log_evidence``, for every pair;
- ``test_posterior_to_arviz``: ``posterior(...).to_arviz()`` wherever the engine must work;
- ``test_refusal_advice_is_followed``: for every expected refusal, each engine the message
  names (with its settings) accepts the story.
"""

from __future__ import annotations

import math
import re

import pytest
import stories
import torch

from ppl_lvm import inference
from ppl_lvm.inference import (
    SVI,
    AnnealedImportanceSampling,
    Enumeration,
    ImportanceSampling,
    ModelGuideMismatchError,
    UnsupportedModelError,
)

pytestmark = pytest.mark.usefixtures("float64")

ENGINES = {
    "enumeration": lambda: Enumeration(),
    "is-prior": lambda: ImportanceSampling("prior", 2000),
    "is-guide": lambda: ImportanceSampling("guide", 2000),
    "svi-elbo": lambda: SVI("elbo", num_particles=50),
    "svi-iwae": lambda: SVI("iwae", num_particles=50),
    "ais": lambda: AnnealedImportanceSampling("prior", num_steps=100, num_chains=16),
}
assert tuple(ENGINES) == stories.ENGINE_NAMES

REFUSALS = (UnsupportedModelError, ModelGuideMismatchError)

# A known bug goes here as (story, engine) -> a one-line reason: a strict xfail, so it turns red
# once the bug is fixed. Every case of the catalogue passes today.
XFAIL_EVIDENCE: dict[tuple[str, str], str] = {}
XFAIL_POSTERIOR: dict[tuple[str, str], str] = {}
XFAIL_ADVICE: dict[tuple[str, str], str] = {}


def _expected() -> dict[str, dict[str, str]]:
    table = {}
    for name in stories.STORIES:
        module = stories.load(name)
        assert set(module.ENGINES) == set(ENGINES), name
        assert set(module.ENGINES.values()) <= set(stories.OUTCOMES), name
        table[name] = dict(module.ENGINES)
    return table


EXPECTED = _expected()


def _cases(outcomes: tuple[str, ...], xfails: dict[tuple[str, str], str]) -> list:
    cases = []
    for name, engines in EXPECTED.items():
        for engine, outcome in engines.items():
            if outcome not in outcomes:
                continue
            reason = xfails.get((name, engine))
            marks = [pytest.mark.xfail(strict=True, reason=f"issue 13: {reason}")] if reason else []
            cases.append(pytest.param(name, engine, outcome, marks=marks, id=f"{name}-{engine}"))
    return cases


def _setting(engine) -> tuple:
    """What tells two engines apart for the advice: the class and its deciding setting."""
    if isinstance(engine, ImportanceSampling):
        return ("ImportanceSampling", engine.proposal)
    if isinstance(engine, SVI):
        return ("SVI", engine.objective)
    return (type(engine).__name__,)


def advised_engines(message: str) -> dict[tuple, object]:
    """The engines a refusal's message names, each with the settings it names: the classes
    (``ImportanceSampling(proposal='prior')``, ``SVI(objective='elbo')``, ``Enumeration``),
    a bare ``objective='...'`` or ``proposal='...'`` (another setting of SVI or IS), and the
    registry's names in quotes (``'is-prior'``)."""
    found: dict[tuple, object] = {}

    def setting_after(start: int, key: str, choices: str) -> str | None:
        window = message[start : start + 60]
        m = re.search(rf"^\s*\((?:{key}\s*=\s*)?['\"]({choices})['\"]", window)
        if m is None:
            m = re.search(rf"^[^.;]*?{key}\s*=\s*['\"]({choices})['\"]", window)
        return m.group(1) if m else None

    proposals, objectives = "prior|guide|uniform", "elbo|iwae|meanfield"
    if re.search(r"\bEnumeration\b", message):
        found[("Enumeration",)] = Enumeration()
    for m in re.finditer(r"\bImportanceSampling\b", message):
        proposal = setting_after(m.end(), "proposal", proposals) or "guide"
        found[("ImportanceSampling", proposal)] = ImportanceSampling(proposal, 2000)
    for m in re.finditer(r"(?<![\w(])proposal\s*=\s*['\"](\w+)['\"]", message):
        found[("ImportanceSampling", m.group(1))] = ImportanceSampling(m.group(1), 2000)
    for m in re.finditer(r"\bSVI\b", message):
        objective = setting_after(m.end(), "objective", objectives) or "elbo"
        found[("SVI", objective)] = SVI(objective, num_particles=50)
    for m in re.finditer(r"(?<![\w(])objective\s*=\s*['\"](\w+)['\"]", message):
        found[("SVI", m.group(1))] = SVI(m.group(1), num_particles=50)
    for m in re.finditer(r"['\"`]([a-z][a-z-]+)['\"`]", message):
        if m.group(1) in inference.available():
            engine = inference.create(m.group(1))
            found.setdefault(_setting(engine), engine)
    return found


def _total_and_se(runner, story, x, mask, ev) -> tuple[float, float]:
    """The total and its standard error. An engine that reports none for a Monte Carlo number
    (SVI's bounds) is asked again under four more seeds: the mean of the five, and its
    standard error from their spread."""
    if ev.stderr is not None or ev.kind == "exact":
        return ev.total, ev.total_stderr or 0.0
    totals = [ev.total] + [runner.log_evidence(story, x, mask, seed=s).total for s in range(1, 5)]
    t = torch.tensor(totals, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(t)))


def _run(name: str):
    module = stories.load(name)
    x, mask = stories.data_of(module)
    return module, stories.build(module), x, mask


@pytest.mark.parametrize(
    ("name", "engine", "outcome"),
    _cases(("exact", "estimate", "bound", "runs", "refuse"), XFAIL_EVIDENCE),
)
def test_log_evidence(name, engine, outcome):
    """log p(x) of the whole data set (``Evidence.total``) against the exact value; a refusal
    is an UnsupportedModelError or ModelGuideMismatchError; and every number is what its
    ``kind`` says (an "exact" is exact, a "lower_bound" is below the exact value)."""
    module, story, x, mask = _run(name)
    runner = ENGINES[engine]()
    if outcome == "refuse":
        with pytest.raises(REFUSALS):
            runner.log_evidence(story, x, mask, seed=0)
        return
    ev = runner.log_evidence(story, x, mask, seed=0)
    assert math.isfinite(ev.total), ev
    exact = module.exact_log_evidence(x)
    if exact is None:
        assert outcome == "runs", f"{name}: outcome {outcome!r} needs an exact value"
        return
    total, se = _total_and_se(runner, story, x, mask, ev)
    slack = 4 * se + 1e-6
    if outcome == "exact":
        assert ev.kind == "exact", ev.kind
        assert total == pytest.approx(exact, abs=1e-5, rel=0)
    elif outcome == "estimate":
        assert abs(total - exact) <= slack, (total, exact, se)
    elif outcome == "bound":
        assert total <= exact + slack, (total, exact, se)
    if ev.kind == "exact":
        assert total == pytest.approx(exact, abs=1e-5, rel=0), "labelled exact"
    if ev.kind == "lower_bound":
        assert total <= exact + slack, ("labelled a lower bound", total, exact, se)


@pytest.mark.parametrize(
    ("name", "engine", "outcome"),
    _cases(("exact", "estimate", "bound", "runs"), XFAIL_POSTERIOR),
)
def test_posterior_to_arviz(name, engine, outcome):
    """Wherever the engine must work, its posterior converts to ArviZ with a finite pointwise
    log-likelihood, and draws of every latent site the engine reports."""
    _, story, x, mask = _run(name)
    runner = ENGINES[engine]()
    # importance sampling's draws are its particles (200 of them: the conversion, not the
    # estimate, is on trial here, and a story that does not broadcast draws them one by one);
    # the others draw 20
    if isinstance(runner, ImportanceSampling):
        runner = ImportanceSampling(runner.proposal, 200)
    draws = {} if isinstance(runner, ImportanceSampling) else {"num_samples": 20}
    post = runner.posterior(story, x, mask, seed=0, **draws)
    idata = post.to_arviz()
    assert "log_likelihood" in idata.groups()
    for var in idata.log_likelihood.data_vars.values():
        assert torch.isfinite(torch.as_tensor(var.values)).all()
    if post.samples:
        assert "posterior" in idata.groups()
        assert set(post.samples) <= set(idata.posterior.data_vars)


@pytest.mark.parametrize(("name", "engine", "outcome"), _cases(("refuse",), XFAIL_ADVICE))
def test_refusal_advice_is_followed(name, engine, outcome):
    """A refusal names another engine, with its settings, and every engine it names accepts
    the story: advice never goes round in a circle."""
    _, story, x, mask = _run(name)
    refusing = ENGINES[engine]()
    with pytest.raises(REFUSALS) as info:
        refusing.log_evidence(story, x, mask, seed=0)
    message = str(info.value)
    named = {k: v for k, v in advised_engines(message).items() if k != _setting(refusing)}
    assert named, f"the refusal names no other engine: {message}"
    for key, other in named.items():
        _, story, x, mask = _run(name)
        try:
            ev = other.log_evidence(story, x, mask, seed=0)
        except REFUSALS as err:
            pytest.fail(f"advised {key} refuses too: {err}\n(the advice was: {message})")
        assert math.isfinite(ev.total), key
