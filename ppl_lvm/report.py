"""A self-contained HTML report: headings, paragraphs, tables and figures in one file.

Figures are embedded as base64 PNGs, so the report can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
h1, h2 { font-weight: 600; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85rem; color: #555; } pre { background: #f7f7f7; padding: 0.5rem; }
"""


class Report:
    """Build an HTML report section by section, then :meth:`write` it.

    Examples
    --------
    >>> r = Report("demo")
    >>> r.table([("a", 1.0)], ("name", "value"))
    >>> "<table>" in r.html()
    True
    """

    def __init__(self, title: str):
        self.title = title
        self._parts: list[str] = []
        self.num_figures = 0
        self.num_tables = 0

    def heading(self, text: str) -> None:
        """A section heading."""
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        """A paragraph of plain text."""
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
        """A table; floats are shown with four significant figures."""

        def cell(value: object) -> str:
            if isinstance(value, float):
                return f"{value:.4g}"
            return html.escape("" if value is None else str(value))

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        self._parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        self.num_tables += 1

    def raw_table(self, table_html: str) -> None:
        """An HTML table produced elsewhere (e.g. ``Comparison.to_html()``)."""
        self._parts.append(table_html)
        self.num_tables += 1

    def figure(self, path: str | os.PathLike, caption: str = "") -> None:
        """Embed a PNG file."""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(
            f'<figure><img alt="{html.escape(Path(path).name)}" '
            f'src="data:image/png;base64,{data}">{cap}</figure>'
        )
        self.num_figures += 1

    def html(self) -> str:
        """The whole document."""
        title = html.escape(self.title)
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
            + "\n".join(self._parts)
            + "</body></html>"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the document to ``path``; returns it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path
