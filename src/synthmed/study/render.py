"""Rendering the report's sections as Markdown and as one self-contained HTML page.

Each :class:`~synthmed.study.sections.Section` becomes a ``##`` heading in Markdown and an
``<h2 id=…>`` in HTML; its blocks become paragraphs, warnings, tables (cells through
:func:`~synthmed.study.sections.fmt`; an HTML table's class is its section's id) and figures.
Images are embedded in both as base64 PNG data URIs: nothing external is referenced.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from synthmed.study.sections import Section, fmt


def _table_md(frame: pd.DataFrame) -> str:
    """A Markdown table (``|`` in cells escaped)."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _table_html(frame: pd.DataFrame, section_id: str) -> str:
    """An HTML table of class ``section_id`` (cells escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="{section_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _data_uri(png: bytes) -> str:
    """``png`` as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown: ``# title``, then each section."""
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        for kind, value in s.blocks:
            if kind == "text":
                parts += [value, ""]
            elif kind == "warning":
                parts += [f"> **Warning:** {value}", ""]
            elif kind == "table":
                parts += [_table_md(value), ""]
            else:
                png, alt = value
                parts += [f"![{alt}]({_data_uri(png)})", ""]
    return "\n".join(parts)


#: the page's CSS.
STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
         "th,td{border:1px solid #bbb;padding:0.2em 0.5em;text-align:right}"
         ".warning{background:#fff3cd;border:1px solid #e0a800;padding:0.5em}img{max-width:100%}")


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one HTML page styled by :data:`STYLE`, each section a ``<section>``."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f'<section><h2 id="{s.id}">{html.escape(s.title)}</h2>')
        for kind, value in s.blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(value)}</p>")
            elif kind == "warning":
                parts.append(f'<p class="warning"><strong>Warning:</strong> {html.escape(value)}</p>')
            elif kind == "table":
                parts.append(_table_html(value, s.id))
            else:
                png, alt = value
                parts.append(f'<figure><img src="{_data_uri(png)}" alt="{html.escape(alt)}">'
                             f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


