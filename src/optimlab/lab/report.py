"""Reports as plain data (:class:`Document`), written as self-contained HTML and as Markdown.

An experiment fills a :class:`Document` with sections of paragraphs, tables (every cell already
formatted, the cells to emphasise already chosen) and figures (files in the run folder); this
module only lays them out. The HTML file embeds its figures as ``data:`` URIs and its style
inline, so it can be mailed or opened offline on its own; a short script checks on load that
every figure decoded, and says so on the console if one did not.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> table = Table("scores", "Scores", ["optimizer", "loss"], [["adam", "0.12"]])
    >>> doc = Document("Example", sections=[Section("Results", ["Adam won."], [table])])
    >>> write_markdown(doc, folder).read_text().splitlines()[0]
    '# Example'
    >>> 'id="table-scores"' in write_html(doc, folder).read_text()
    True
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_text

__all__ = ["Document", "Figure", "Section", "Table", "write_html", "write_markdown"]


@dataclass
class Table:
    """A table of formatted cells; ``emphasis`` holds the (row, column) cells to bold."""

    id: str
    caption: str
    headers: list[str]
    rows: list[list[str]]
    emphasis: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""


@dataclass
class Figure:
    """A figure file (PNG, or an animated GIF), relative to the run folder, with its caption."""

    path: str
    caption: str


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)  # shown as a key/value list


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } .subtitle { color: #555; margin-top: 0; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1.4rem; font-size: 0.86rem; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
th, td { border: 1px solid #d6d6d6; padding: 0.25rem 0.55rem; }
th { background: #f3f3f5; } td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { text-align: left; } tbody tr:nth-child(even) { background: #fafafa; }
td.best { font-weight: 700; background: #e8f5e9; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
.note { color: #555; font-size: 0.85rem; margin-top: -1rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem;
          font-size: 0.85rem; } dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
code { background: #f3f3f5; padding: 0 0.25rem; border-radius: 3px; }
"""

# Counts the figures that decoded; a broken one is reported on the console, where a browser
# test (and a reader's developer tools) will see it.
_CHECK_FIGURES = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("figure img"), ok = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok += 1; }
    else { console.error("figure did not load: " + img.alt); }
  });
  document.body.setAttribute("data-figures-loaded", ok + "/" + images.length);
});
"""


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    body = []
    for i, row in enumerate(table.rows):
        cells = "".join(
            f'<td class="best">{_e(c)}</td>' if (i, j) in table.emphasis else f"<td>{_e(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (
        f'<table id="table-{_e(table.id)}"><caption>{_e(table.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"
    )


def _html_figure(figure: Figure, folder: Path) -> str:
    data = base64.b64encode((folder / figure.path).read_bytes()).decode("ascii")
    kind = "gif" if figure.path.endswith(".gif") else "png"
    return (
        f'<figure><img src="data:image/{kind};base64,{data}" alt="{_e(figure.path)}">'
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
    )


def write_html(document: Document, folder: Path, name: str = "report.html") -> Path:
    """Write ``folder/name``: one file, figures embedded, no network needed to view it."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(document.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(document.title)}</h1>",
    ]
    if document.subtitle:
        parts.append(f'<p class="subtitle">{_e(document.subtitle)}</p>')
    for section in document.sections:
        parts.append(f"<section><h2>{_e(section.title)}</h2>")
        parts += [f"<p>{_e(p)}</p>" for p in section.paragraphs]
        if section.bullets:
            parts.append("<ul>" + "".join(f"<li>{_e(b)}</li>" for b in section.bullets) + "</ul>")
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_figure(f, folder) for f in section.figures]
        parts.append("</section>")
    if document.meta:
        items = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in document.meta)
        parts.append(f'<section><h2>Reproduce this run</h2><dl class="meta">{items}</dl></section>')
    parts.append(f"<script>{_CHECK_FIGURES}</script></body></html>")
    return write_text(folder / name, "\n".join(parts))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_table(table: Table) -> str:
    lines = [f"**{table.caption}**", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in table.headers) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.headers) - 1)) + "|")
    for i, row in enumerate(table.rows):
        cells = [
            f"**{_md_cell(c)}**" if (i, j) in table.emphasis and c else _md_cell(c)
            for j, c in enumerate(row)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def write_markdown(document: Document, folder: Path, name: str = "summary.md") -> Path:
    """Write ``folder/name``: the same document in Markdown, figures linked, not embedded."""
    lines = [f"# {document.title}", ""]
    if document.subtitle:
        lines += [document.subtitle, ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.bullets:
            lines += [f"- {b}" for b in section.bullets] + [""]
        for table in section.tables:
            lines += [_md_table(table), ""]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure.path})", "", f"_{figure.caption}_", ""]
    if document.meta:
        lines += ["## Reproduce this run", ""]
        lines += [f"- **{key}**: `{value}`" for key, value in document.meta] + [""]
    return write_text(folder / name, "\n".join(lines))
