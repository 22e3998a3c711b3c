"""Compare engines on one story: the same log p(x), computed exactly, bounded and estimated.

:func:`compare` runs each engine's ``log_evidence`` on the same data and seed, times it, and
gathers the answers in a :class:`Comparison`: a table (engine, estimate, standard error, kind,
ESS, k̂, seconds) and a figure of the per-datum means with their error bars. An engine that
refuses the story becomes a row whose ``note`` says why, so a user sees at a glance which
engines apply to their own model and what each would have needed.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from .._typing import ModelLike
from ..core.checks import check_data
from ..core.data import Data, Mask, num_data
from ..core.errors import ModelGuideMismatchError, UnsupportedModelError
from ..core.results import Evidence
from ..inference import Engine, available, create, spec
from ..models.base import LatentVariableModel
from ..models.story import as_model, conform_data
from ..models.support import check_values

if TYPE_CHECKING:
    import pandas

__all__ = [
    "COLUMNS",
    "Comparison",
    "compare_engines",
    "labels",
    "prepare",
    "resolve",
    "run_evidence",
]

#: Keys of every row of :attr:`Comparison.rows`, with the header each gets in a table.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("engine", "engine"),
    ("estimate", "estimate"),
    ("mean", "mean per datum"),
    ("stderr", "std. error"),
    ("kind", "kind"),
    ("ess", "ESS"),
    ("khat", "k̂"),
    ("seconds", "seconds"),
    ("note", "note"),
)

# how each kind of number is drawn: marker, colour, legend entry
_STYLE = {
    "exact": ("D", "C0", "exact"),
    "estimate": ("o", "C1", "estimate ± 2 SE"),
    "lower_bound": ("^", "C2", "lower bound (truth above)"),
}


def resolve(engines: Sequence[Engine | str] | Engine | str | None) -> list[Engine]:
    if engines is None:
        return [create(n) for n in available()]
    # one engine or one name is taken as a list of one; a str must not be iterated by letter
    if isinstance(engines, Engine | str):
        engines = [engines]
    if not isinstance(engines, Sequence) or not engines:
        raise ValueError(
            f"engines must be a non-empty list of Engine instances or registered names "
            f"{list(available())}, or None for all of them; got {engines!r}."
        )
    # every name is checked before any engine runs
    for e in engines:
        if isinstance(e, str):
            spec(e)
        elif not isinstance(e, Engine):
            raise TypeError(
                f"each engine must be an Engine instance or a name from {list(available())}, "
                f"got {type(e).__name__}."
            )
    return [create(e) if isinstance(e, str) else e for e in engines]


def _row(label: str, ev: Evidence | None, seconds: float, note: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(k for k, _ in COLUMNS)
    row.update(engine=label, seconds=seconds, note=note)
    if ev is None:
        return row
    row.update(estimate=ev.total, mean=ev.mean, stderr=ev.total_stderr, kind=ev.kind)
    if ev.ess is not None:
        row["ess"] = float(ev.ess.median())
    if ev.khat is not None:
        # ArviZ gives inf or NaN where a datum's weight tail could not be fitted (a latent with
        # few states gives few distinct weights): that is "undiagnosed", not "infinitely bad".
        # The worst fitted value is the diagnosis; NaN only when no datum could be fitted.
        known = ev.khat[torch.isfinite(ev.khat)]
        row["khat"] = float(known.max()) if known.numel() else float("nan")
    return row


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if key in ("estimate", "mean", "stderr"):
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:.4e}"
    if key == "ess":
        return f"{value:,.1f}"
    if key == "khat":
        return f"{value:.2f}"
    if key == "seconds":
        return f"{value:.3f}"
    return str(value)


@dataclass(frozen=True, eq=False)
class Comparison:
    """log p(x) of one story by several engines, side by side.

    Attributes
    ----------
    rows : list of dict
        One dict per engine, in the order given, with the keys of :data:`COLUMNS`:

        - ``engine`` (str): the engine's ``label``, such as ``"IS prior, K=1000"``;
        - ``estimate`` (float or None): log p(x) of the whole data set, the sum over data
          (:attr:`Evidence.total`);
        - ``mean`` (float or None): the same per datum (:attr:`Evidence.mean`);
        - ``stderr`` (float or None): Monte Carlo standard error of ``estimate``; 0 for an
          exact value, None when the engine gives none (a bound);
        - ``kind`` (str or None): ``"exact"``, ``"estimate"`` or ``"lower_bound"``;
        - ``ess`` (float or None): median over data of the effective sample size;
        - ``khat`` (float or None): worst (largest) Pareto k̂ over the data whose weight tail
          could be fitted; NaN (shown "n/a") when none could, as with a latent of few states;
        - ``seconds`` (float): wall time of the engine's ``log_evidence``;
        - ``note`` (str or None): why the engine refused the story; its numbers are then None.
    figure : pathlib.Path or None
        Where :func:`compare` saved the figure, or None when no ``out`` was given.
    model : str
        Name of the story.
    num_data : int
        N, the data the evidence is over.
    seed : int or None
        The seed every engine ran with.
    """

    rows: list[dict[str, Any]]
    figure: Path | None
    model: str
    num_data: int
    seed: int | None = 0

    # -- lookups ------------------------------------------------------------------------------
    def row(self, engine: str) -> dict[str, Any]:
        """The row whose ``engine`` label is ``engine``; KeyError naming the labels if none."""
        for r in self.rows:
            if r["engine"] == engine:
                return r
        raise KeyError(f"no row {engine!r}; the rows are {[r['engine'] for r in self.rows]}.")

    @property
    def exact(self) -> float | None:
        """log p(x) of the whole data set from the first exact row, or None without one."""
        for r in self.rows:
            if r["kind"] == "exact":
                return r["estimate"]
        return None

    @property
    def refused(self) -> dict[str, str]:
        """Engine label to the reason it gave for refusing the story."""
        return {r["engine"]: r["note"] for r in self.rows if r["note"] is not None}

    # -- tables -------------------------------------------------------------------------------
    def _cells(self) -> list[list[str]]:
        return [[_cell(k, r[k]) for k, _ in COLUMNS] for r in self.rows]

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table, one line per engine."""
        headers = [h for _, h in COLUMNS]

        def line(cells: list[str]) -> str:
            # a pipe inside a refusal message would split its cell
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        numeric = {"estimate", "mean", "stderr", "ess", "khat", "seconds"}
        rule = ["---:" if k in numeric else "---" for k, _ in COLUMNS]
        return "\n".join(
            [line(headers), "|" + "|".join(rule) + "|"] + [line(c) for c in self._cells()]
        )

    def to_html(self) -> str:
        """A plain ``<table>`` (no styling, no extra dependencies), cells HTML-escaped."""
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells()
        )
        return (
            f'<table class="ppl-lvm-compare">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>{body}</tbody>\n</table>"
        )

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a ``pandas.DataFrame`` (pandas comes with ArviZ), None as NaN/None."""
        import pandas

        return pandas.DataFrame(self.rows, columns=[k for k, _ in COLUMNS])

    def __str__(self) -> str:
        # refusal messages are long: they go under the table as numbered notes
        keys = [k for k, _ in COLUMNS if k != "note"]
        headers = [h for k, h in COLUMNS if k != "note"]
        cells, notes = [], []
        for r in self.rows:
            line = [_cell(k, r[k]) for k in keys]
            if r["note"] is not None:
                notes.append(r["note"])
                line[keys.index("kind")] = f"refused [{len(notes)}]"
            cells.append(line)
        widths = [max(len(c) for c in col) for col in zip(headers, *cells, strict=True)]
        left = {"engine", "kind"}

        def fmt(line: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if k in left else c.rjust(w)
                for k, c, w in zip(keys, line, widths, strict=True)
            ).rstrip()

        out = [
            f"log p(x) of {self.model} over N={self.num_data} data (seed {self.seed})",
            fmt(headers),
            "  ".join("-" * w for w in widths),
        ]
        out += [fmt(c) for c in cells]
        out += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
        return "\n".join(out)

    def _repr_html_(self) -> str:  # Jupyter shows the table
        return self.to_html()

    # -- figure -------------------------------------------------------------------------------
    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """Draw the per-datum mean of each engine, with ±2 standard errors, and save it.

        Exact values are diamonds and a dashed horizontal line; estimates are circles with
        error bars of ±2 SE of the mean per datum (``stderr / N``); lower bounds are upward
        triangles, since the truth lies above them. A refused engine keeps its place on the
        axis, marked "refused".

        Parameters
        ----------
        path : path-like
            Where the PNG goes; its folder is created.
        title : str, optional
            Defaults to the story's name and N.

        Returns
        -------
        pathlib.Path
        """
        n = len(self.rows)
        fig = Figure(figsize=(max(4.5, 1.3 * n + 1.5), 4.0))
        ax = fig.subplots()
        drawn = set()
        for i, r in enumerate(self.rows):
            if r["kind"] is None:
                # x in data coordinates, y in axes coordinates: the mark sits at the bottom
                # whatever the scale of the estimates
                trans = blended_transform_factory(ax.transData, ax.transAxes)
                ax.text(i, 0.04, "refused", transform=trans, ha="center", color="0.5", fontsize=8)
                continue
            marker, colour, label = _STYLE[r["kind"]]
            se = r["stderr"] / self.num_data if r["stderr"] else None  # SE of the mean
            ax.errorbar(
                [i],
                [r["mean"]],
                yerr=None if se is None else [2 * se],
                fmt=marker,
                color=colour,
                capsize=4,
                label=None if label in drawn else label,
            )
            drawn.add(label)
        exact = self.exact
        if exact is not None:
            ax.axhline(exact / self.num_data, color="C0", ls="--", lw=1, zorder=0)
        ax.set_xticks(range(n), [r["engine"] for r in self.rows], rotation=20, ha="right")
        ax.set_xlim(-0.5, n - 0.5)
        ax.margins(y=0.12)  # room for the "refused" marks under the lowest point
        ax.set_ylabel(f"log p(x) per datum (mean over N={self.num_data})")
        ax.set_title(title or f"log p(x) of {self.model} by engine", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="best")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        return path


def prepare(model: ModelLike, x: Data, mask: Mask) -> tuple[LatentVariableModel, Data, Mask]:
    """The story as a model, and the data checked against it once for every engine.

    Bad data fail once, here, rather than as one identical refusal per engine; and the story is
    coerced once, so every engine sees the same object and the same parameters (a
    ``(model_fn, guide_fn)`` pair would otherwise get fresh ``pyro.param`` values per engine).
    """
    lvm = as_model(model)
    x, mask = check_data(x, mask, fill=lvm.masked_fill)
    x = conform_data(lvm, x)
    check_values(lvm, x, mask)
    return lvm, x, mask


def labels(engines: Sequence[Engine]) -> list[str]:
    """Each engine's ``label``; two engines with the same settings get ``" #2"``, ... ."""
    out: list[str] = []
    for engine in engines:
        label = engine.label
        if label in out:
            label = f"{label} #{sum(o.startswith(label) for o in out) + 1}"
        out.append(label)
    return out


def run_evidence(
    engine: Engine, lvm: LatentVariableModel, x: Data, mask: Mask, seed: int | None
) -> tuple[Evidence | None, float, str | None]:
    """One engine's ``log_evidence``: the Evidence (None if refused), its seconds, the refusal."""
    start = time.perf_counter()
    try:
        ev, note = engine.log_evidence(lvm, x, mask, seed=seed), None
    except (UnsupportedModelError, ModelGuideMismatchError) as exc:
        # a refusal is an answer about the story, not a failure of the comparison;
        # any other error is a bug and propagates
        ev, note = None, f"{type(exc).__name__}: {exc}"
    return ev, time.perf_counter() - start, note


def compare_engines(
    model: ModelLike,
    x: Data,
    mask: Mask = None,
    engines: Sequence[Engine | str] | Engine | str | None = None,
    *,
    seed: int | None = 0,
    out: str | os.PathLike | None = None,
    title: str | None = None,
) -> Comparison:
    """The one-story form of :func:`ppl_lvm.compare`: every engine's ``log_evidence`` on it.

    Returns
    -------
    Comparison
        One row per engine, in the order given; see :func:`ppl_lvm.compare` for the arguments.
    """
    resolved = resolve(engines)
    lvm, x, mask = prepare(model, x, mask)
    rows = []
    for engine, label in zip(resolved, labels(resolved), strict=True):
        ev, seconds, note = run_evidence(engine, lvm, x, mask, seed)
        rows.append(_row(label, ev, seconds, note))
    result = Comparison(rows=rows, figure=None, model=lvm.name, num_data=num_data(x), seed=seed)
    if out is None:
        return result
    figure = result.plot(Path(out) / "compare.png", title=title)
    return Comparison(rows=rows, figure=figure, model=lvm.name, num_data=num_data(x), seed=seed)
