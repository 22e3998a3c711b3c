"""Compare stories on the same data: log evidence, log Bayes factors with standard errors, LOO.

Each story runs through each engine. A row per (story, engine) holds the engine's log p(x) of
the whole data set and its standard error, the log Bayes factor against a reference story by
the same engine with its standard error, and PSIS-LOO (``elpd_loo`` and its standard error)
from the same engine's posterior, converted by the one ArviZ bridge
(:func:`~ppl_lvm.core.arviz_bridge.to_inference_data`, :func:`~ppl_lvm.core.arviz_bridge.loo_waic`).

Standard errors. The total's SE is ``Evidence.total_stderr``: sqrt(Σ_n se_n²) over per-datum
estimates, which are independent, or the one SE of a joint estimate; 0 for an exact value. Two
stories run independently, so the SE of log BF = total_a - total_b is sqrt(se_a² + se_b²).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._typing import ModelLike
from ..core.arviz_bridge import loo_waic, to_inference_data
from ..core.data import Data, Mask, num_data
from ..core.errors import ModelGuideMismatchError, UnsupportedModelError
from ..core.results import Evidence
from ..inference import AnnealedImportanceSampling, Bracket, Engine
from ..models.base import LatentVariableModel
from ._storyplot import plot_stories
from .engines import _cell, _row, labels, prepare, resolve, run_evidence

if TYPE_CHECKING:
    import pandas

__all__ = ["STORY_COLUMNS", "StoryComparison", "compare_stories"]

#: Keys of every row of :attr:`StoryComparison.rows`, with the header each gets in a table.
STORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("story", "story"),
    ("engine", "engine"),
    ("estimate", "log p(x)"),
    ("stderr", "std. error"),
    ("kind", "kind"),
    ("log_bf", "log BF"),
    ("log_bf_se", "log BF s.e."),
    ("reference", "against"),
    ("elpd_loo", "elpd_loo"),
    ("loo_se", "elpd_loo s.e."),
    ("loo_khat", "LOO k̂"),
    ("khat", "k̂"),
    ("lower", "bracket lower"),
    ("upper", "bracket upper"),
    ("seconds", "seconds"),
    ("note", "note"),
    ("bf_note", "log BF note"),
    ("loo_note", "LOO note"),
)

_NUMERIC = {"estimate", "stderr", "log_bf", "log_bf_se", "elpd_loo", "loo_se", "lower", "upper"}
_NOTES = ("note", "bf_note", "loo_note")
# the kinds whose differences are Bayes factors: a lower bound sits an unknown gap below log p(x)
_COMPARABLE = ("exact", "estimate")
_LOWER_BOUND_NOTE = (
    "no Bayes factor from lower bounds: each bound sits below its log p(x) by an unknown gap, "
    "so their difference bounds nothing; use an exact or estimating engine"
)


def _check_stories(models: Mapping[str, ModelLike], reference: str | None) -> None:
    """Refuse an empty mapping, a name that is no string, a value that is no story, and a
    reference that names no story, before any work."""
    if not models:
        raise ValueError(
            "compare got an empty mapping of stories; pass {name: story} with at least one "
            "entry, e.g. {'K=2': gmm2, 'K=3': gmm3}, or one story on its own to compare engines."
        )
    for name, story in models.items():
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"story names must be non-empty strings, got {name!r}; name each story as the "
                "table should show it, e.g. {'K=2': gmm2}."
            )
        pair = (
            isinstance(story, tuple)
            and len(story) == 2
            and callable(story[0])
            and (story[1] is None or callable(story[1]))
        )
        plain = callable(story) and not isinstance(story, torch.nn.Module | tuple)
        if not (isinstance(story, LatentVariableModel) or pair or plain):
            raise ValueError(
                f"story {name!r} is a {type(story).__name__}, not a story; give a "
                "LatentVariableModel, a (model_fn, guide_fn) pair or a model function "
                "(ppl_lvm.models.from_functions wraps your functions)."
            )
    if reference is not None and reference not in models:
        raise ValueError(
            f"reference={reference!r} names no story; the stories are {list(models)}. "
            "Pass one of them, or None to take the best story by each engine."
        )


def _bracket(ev: Evidence | None, bracket: Bracket | None, n: int) -> tuple[float | None, ...]:
    """Where the story's AIS estimate has a bracket: the estimate and the estimate plus the
    bracket's gap (per datum, times these data's N), the range in which log p(x) lies if the
    data are like those the bracket simulated."""
    if ev is None or bracket is None:
        return None, None
    gap = float(bracket.gap) / num_data(bracket.x) * n
    return ev.total, ev.total + max(gap, 0.0)


def _check_brackets(brackets: Mapping[str, Any] | None, models: Mapping[str, Any]) -> None:
    for name, b in (brackets or {}).items():
        if name not in models:
            raise ValueError(
                f"brackets names story {name!r}, and the stories are {list(models)}; key each "
                "bracket by its story's name."
            )
        if not isinstance(b, Bracket):
            raise ValueError(
                f"brackets[{name!r}] is a {type(b).__name__}, not a Bracket; make one with "
                "AnnealedImportanceSampling(...).bracket(story, num_data, like=x)."
            )


def _loo(
    engine: Engine, lvm: LatentVariableModel, x: Data, mask: Mask, seed: int | None
) -> tuple[dict[str, float], str | None]:
    """PSIS-LOO of the engine's posterior draws: its numbers, or why there are none."""
    try:
        post = engine.posterior(lvm, x, mask, seed=seed)
    except (UnsupportedModelError, ModelGuideMismatchError) as exc:
        return {}, f"no posterior from this engine: {type(exc).__name__}: {exc}"
    if post.log_lik is None:
        return {}, (
            f"{engine.name}'s posterior carries no pointwise log-likelihood (log_lik), which "
            "LOO needs"
        )
    res = loo_waic(to_inference_data(post, seed=seed))
    numbers = {"elpd_loo": res.elpd_loo, "loo_se": res.se, "loo_khat": res.max_fitted_khat}
    n = post.log_lik.shape[1]
    if bool((post.log_lik == post.log_lik[:1]).all()):
        return numbers, (
            "every posterior draw gives each datum the same log-likelihood (point estimates, "
            "or a posterior on one state): nothing is left out, so elpd_loo is the "
            "log-likelihood at that value"
        )
    if res.max_fitted_khat > res.good_k:
        return numbers, (
            f"Pareto k̂ {res.max_fitted_khat:.2f} above ArviZ's bound {res.good_k:.2f}: "
            "PSIS-LOO is unreliable for some data"
        )
    if res.num_unfitted:
        return numbers, (
            f"Pareto k̂ could not be fitted for {res.num_unfitted} of {n} data (few distinct "
            "log-likelihood values among the draws, as under a discrete posterior of few "
            "states): PSIS-LOO is undiagnosed there"
        )
    return numbers, None


def _bayes_factors(rows: list[dict[str, Any]], reference: str | None) -> None:
    """Fill log_bf, log_bf_se, reference and bf_note of every row, in place, engine by engine."""
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        comparable = [r for r in mine if r["kind"] in _COMPARABLE]
        if reference is not None:
            ref = next(r for r in mine if r["story"] == reference)
        elif comparable:
            ref = max(comparable, key=lambda r: r["estimate"])
        else:
            ref = None
        for r in mine:
            if r["kind"] is None:
                continue  # refused: the note says why
            r["reference"] = None if ref is None else ref["story"]
            if r["kind"] not in _COMPARABLE:
                r["bf_note"] = _LOWER_BOUND_NOTE
            elif ref is None or ref["kind"] not in _COMPARABLE:
                r["bf_note"] = (
                    f"the reference story {reference!r} has no exact or estimated log p(x) by "
                    "this engine"
                )
            else:
                r["log_bf"] = r["estimate"] - ref["estimate"]
                # independent runs: the variances add (the reference against itself is 0 ± 0)
                r["log_bf_se"] = (
                    0.0 if r is ref else math.hypot(r["stderr"] or 0.0, ref["stderr"] or 0.0)
                )


@dataclass(frozen=True, eq=False)
class StoryComparison:
    """log p(x) of several stories of the same data, by several engines, with Bayes factors.

    Attributes
    ----------
    rows : list of dict
        One dict per (story, engine), stories in the order given and engines within each, with
        the keys of :data:`STORY_COLUMNS`:

        - ``story`` (str), ``engine`` (str): the story's name and the engine's ``label``;
        - ``estimate`` (float or None): log p(x_1..N | story), :attr:`Evidence.total`;
        - ``stderr`` (float or None): its standard error, :attr:`Evidence.total_stderr`
          (sqrt(Σ_n se_n²) per datum, or the joint SE); 0 when exact, None for a bound;
        - ``kind`` (str or None): ``"exact"``, ``"estimate"`` or ``"lower_bound"``;
        - ``log_bf`` (float or None): log p(x | story) - log p(x | reference), the log Bayes
          factor of the story against ``reference`` by the same engine (> 0 favours the story);
        - ``log_bf_se`` (float or None): its standard error, sqrt(se² + se_reference²);
        - ``reference`` (str or None): the story it is taken against;
        - ``elpd_loo``, ``loo_se`` (float or None): ArviZ's PSIS-LOO expected log pointwise
          predictive density of the engine's posterior draws, and its standard error;
        - ``loo_khat`` (float or None): the largest Pareto k̂ of the leave-one-out weights;
        - ``khat`` (float or None): the worst Pareto k̂ of the evidence's importance weights;
        - ``lower``, ``upper`` (float or None): for an AIS row of a story given in
          ``brackets``, the AIS estimate and the estimate plus the bracket's gap (per datum,
          scaled to these data): where log p(x) lies if the data are like the simulated ones;
          None otherwise;
        - ``seconds`` (float): wall time of ``log_evidence`` (the posterior not included);
        - ``note`` (str or None): why the engine refused the story; its numbers are then None;
        - ``bf_note``, ``loo_note`` (str or None): why ``log_bf`` or ``elpd_loo`` is missing,
          or, for LOO, a warning that PSIS k̂ makes it unreliable.
    stories : tuple of str
        The story names, in order.
    engines : tuple of str
        The engine labels, in order.
    evidence : Mapping[tuple[str, str], Evidence or None]
        (story, engine label) to the engine's :class:`Evidence`; None where it refused.
    figure : pathlib.Path or None
        Where :func:`compare` saved the figure, or None when no ``out`` was given.
    num_data : int
        N, the data every story explains.
    seed : int or None
        The seed every engine ran with.
    """

    rows: list[dict[str, Any]]
    stories: tuple[str, ...]
    engines: tuple[str, ...]
    evidence: Mapping[tuple[str, str], Evidence | None]
    figure: Path | None
    num_data: int
    seed: int | None = 0

    def row(self, story: str, engine: str) -> dict[str, Any]:
        """The row of ``story`` by ``engine`` (a label); KeyError naming the choices if none."""
        for r in self.rows:
            if r["story"] == story and r["engine"] == engine:
                return r
        raise KeyError(
            f"no row ({story!r}, {engine!r}); the stories are {list(self.stories)} and the "
            f"engines {list(self.engines)}."
        )

    @property
    def best(self) -> dict[str, str]:
        """Engine label to the story with the largest exact or estimated log p(x) by it."""
        out = {}
        for e in self.engines:
            rows = [r for r in self.rows if r["engine"] == e and r["kind"] in _COMPARABLE]
            if rows:
                out[e] = max(rows, key=lambda r: r["estimate"])["story"]
        return out

    def log_bayes_factor(self, a: str, b: str, engine: str) -> tuple[float, float]:
        """log p(x | a) - log p(x | b) by ``engine``, and its standard error.

        Raises
        ------
        ValueError
            When either story has no exact or estimated log p(x) by that engine.
        """
        ra, rb = self.row(a, engine), self.row(b, engine)
        for name, r in ((a, ra), (b, rb)):
            if r["kind"] not in _COMPARABLE:
                raise ValueError(
                    f"story {name!r} has no exact or estimated log p(x) by {engine!r} (kind "
                    f"{r['kind']}); take a Bayes factor from an engine that gives one."
                )
        return ra["estimate"] - rb["estimate"], math.hypot(ra["stderr"] or 0.0, rb["stderr"] or 0.0)

    @property
    def refused(self) -> dict[tuple[str, str], str]:
        """(story, engine) to the reason the engine gave for refusing the story."""
        return {(r["story"], r["engine"]): r["note"] for r in self.rows if r["note"] is not None}

    # -- tables -------------------------------------------------------------------------------
    def _cells(self, keys: Sequence[str]) -> list[list[str]]:
        return [[_story_cell(k, r[k]) for k in keys] for r in self.rows]

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table, one line per story and engine."""
        keys = [k for k, _ in STORY_COLUMNS]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        rule = ["---:" if k in _NUMERIC | {"khat", "loo_khat", "seconds"} else "---" for k in keys]
        return "\n".join(
            [line([h for _, h in STORY_COLUMNS]), "|" + "|".join(rule) + "|"]
            + [line(c) for c in self._cells(keys)]
        )

    def to_html(self) -> str:
        """A plain ``<table>`` (no styling, no extra dependencies), cells HTML-escaped."""
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in STORY_COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells([k for k, _ in STORY_COLUMNS])
        )
        return (
            f'<table class="ppl-lvm-compare-stories">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>{body}</tbody>\n</table>"
        )

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a ``pandas.DataFrame`` (pandas comes with ArviZ)."""
        import pandas

        return pandas.DataFrame(self.rows, columns=[k for k, _ in STORY_COLUMNS])

    def __str__(self) -> str:
        # notes are long: they go under the table, numbered once each; empty columns are left
        # out (the bracket columns, unless an engine gives a bracket)
        keys = [
            k
            for k, _ in STORY_COLUMNS
            if k not in _NOTES
            and (k in ("story", "engine") or any(r[k] is not None for r in self.rows))
        ]
        headers = [h for k, h in STORY_COLUMNS if k in keys]
        cells, notes = [], {}
        for r in self.rows:
            line = [_story_cell(k, r[k]) for k in keys]
            marks = []
            for key in _NOTES:
                if r[key] is not None:
                    number = notes.setdefault(r[key], len(notes) + 1)
                    marks.append(f"[{number}]")
            if r["note"] is not None:
                line[keys.index("kind")] = "refused"
            cells.append(line + [" ".join(marks)])
        headers.append("notes")
        widths = [max(len(c) for c in col) for col in zip(headers, *cells, strict=True)]
        left = {"story", "engine", "kind", "reference"}

        def fmt(line: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if k in left else c.rjust(w)
                for k, c, w in zip([*keys, "notes"], line, widths, strict=True)
            ).rstrip()

        out = [
            f"log p(x) of {len(self.stories)} stories over N={self.num_data} data "
            f"(seed {self.seed}); log BF against the reference story by the same engine",
            fmt(headers),
            "  ".join("-" * w for w in widths),
        ]
        out += [fmt(c) for c in cells]
        out += [f"[{i}] {n}" for n, i in notes.items()]
        return "\n".join(out)

    def plot(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """Save a figure: per story, log p(x) by each engine with ±2 SE bars (and any bracket
        as an interval), and beside it elpd_loo ± its SE.

        Parameters
        ----------
        path : path-like
            Where the PNG goes; its folder is created.
        title : str, optional
            Defaults to the number of stories and N.

        Returns
        -------
        pathlib.Path
        """
        return plot_stories(
            self.rows,
            self.stories,
            self.engines,
            path,
            title=title or f"{len(self.stories)} stories over N={self.num_data} data",
        )


def _story_cell(key: str, value: Any) -> str:
    if key in ("log_bf", "log_bf_se", "elpd_loo", "loo_se", "lower", "upper"):
        return _cell("estimate", value)
    if key == "loo_khat":
        return _cell("khat", value)
    return _cell(key, value)


def compare_stories(
    models: Mapping[str, ModelLike],
    x: Data,
    mask: Mask = None,
    engines: Sequence[Engine | str] | Engine | str | None = None,
    *,
    seed: int | None = 0,
    out: str | os.PathLike | None = None,
    title: str | None = None,
    reference: str | None = None,
    loo: bool = True,
    brackets: Mapping[str, Bracket] | None = None,
) -> StoryComparison:
    """The several-stories form of :func:`ppl_lvm.compare`.

    Every argument is checked, and every story's data, before any engine runs.

    Returns
    -------
    StoryComparison
        One row per story and engine; see :func:`ppl_lvm.compare` for the arguments.
    """
    _check_stories(models, reference)
    _check_brackets(brackets, models)
    resolved = resolve(engines)
    names = labels(resolved)
    prepared = {name: prepare(story, x, mask) for name, story in models.items()}
    n = num_data(next(iter(prepared.values()))[1])
    rows, evidence = [], {}
    for story, (lvm, xs, ms) in prepared.items():
        for engine, label in zip(resolved, names, strict=True):
            ev, seconds, note = run_evidence(engine, lvm, xs, ms, seed)
            evidence[story, label] = ev
            base = _row(label, ev, seconds, note)
            row: dict[str, Any] = dict.fromkeys(k for k, _ in STORY_COLUMNS)
            row.update({k: base[k] for k in ("engine", "estimate", "stderr", "kind", "khat")})
            row.update(story=story, seconds=seconds, note=note)
            ais = isinstance(engine, AnnealedImportanceSampling)
            row["lower"], row["upper"] = _bracket(
                ev, (brackets or {}).get(story) if ais else None, n
            )
            if loo and ev is not None:
                numbers, row["loo_note"] = _loo(engine, lvm, xs, ms, seed)
                row.update(numbers)
            rows.append(row)
    _bayes_factors(rows, reference)
    result = StoryComparison(
        rows=rows,
        stories=tuple(models),
        engines=tuple(names),
        evidence=evidence,
        figure=None,
        num_data=n,
        seed=seed,
    )
    if out is None:
        return result
    figure = result.plot(Path(out) / "compare_stories.png", title=title)
    return StoryComparison(
        rows=rows,
        stories=result.stories,
        engines=result.engines,
        evidence=evidence,
        figure=figure,
        num_data=n,
        seed=seed,
    )
