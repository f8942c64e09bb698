"""HTML pieces of the report: every text escaped here, nothing else builds markup.

The page uses no script and no external resource; its Content-Security-Policy forbids both,
so a browser opening it makes no request beyond the report's own files.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any


def esc(value: object) -> str:
    """Text (or an attribute value) escaped for HTML."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class ThumbRef:
    """Where a thumbnail's image is: ``src`` (relative URL or data URI) and its size."""

    src: str
    width: int
    height: int


@dataclass(frozen=True)
class Tile:
    """One image as shown: its path, a caption, and its thumbnail (``None``: unreadable)."""

    path: str
    caption: str
    thumb: ThumbRef | None
    reason: str = ""
    query: bool = False


def tile(t: Tile) -> str:
    """A ``<figure>`` with a lazily loaded thumbnail (or a box saying it is unreadable)."""
    cls = "thumb query" if t.query else "thumb"
    title = esc(t.path if not t.reason else f"{t.path}: {t.reason}")
    if t.thumb is None:
        image = f'<div class="missing" title="{title}">unreadable</div>'
    else:
        image = (
            f'<img src="{esc(t.thumb.src)}" width="{t.thumb.width}" height="{t.thumb.height}" '
            f'loading="lazy" decoding="async" alt="{esc(t.path)}" title="{title}">'
        )
    return f'<figure class="{cls}">{image}<figcaption>{esc(t.caption)}</figcaption></figure>'


def strip(tiles: Iterable[Tile], more: int = 0) -> str:
    """A horizontal row of tiles, with a note when ``more`` were left out."""
    body = "".join(tile(t) for t in tiles)
    note = f'<p class="note">and {more} more</p>' if more > 0 else ""
    return f'<div class="strip">{body}</div>{note}'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: int = 0) -> str:
    """A table; the last ``numeric`` columns are right-aligned numbers."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    first_num = len(headers) - numeric
    lines = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if i >= first_num else f"<td>{esc(v)}</td>"
            for i, v in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def section(ident: str, title: str, body: str) -> str:
    """A top-level section with an anchor ``ident``."""
    return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def note(text: str) -> str:
    """A muted paragraph."""
    return f'<p class="note">{esc(text)}</p>'


def group(title: str, count_text: str, body: str, *, attrs: dict[str, Any] | None = None) -> str:
    """A titled block inside a section (a cluster, a query, a duplicate group)."""
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return (
        f'<div class="group"{extra}><h3>{esc(title)} <small>{esc(count_text)}</small></h3>'
        f"{body}</div>"
    )


def details(summary: str, body: str) -> str:
    """A collapsed block."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def code_list(items: Iterable[str]) -> str:
    """A bulleted list of code-formatted lines."""
    return "<ul>" + "".join(f"<li><code>{esc(i)}</code></li>" for i in items) + "</ul>"


def page(*, title: str, sections: Sequence[tuple[str, str, str]], size: int, version: str) -> str:
    """The whole page from ``(id, title, body html)`` sections."""
    template = string.Template(
        resources.files("dinokit.viz").joinpath("_templates/report.html").read_text("utf-8")
    )
    nav = "".join(f'<a href="#{esc(ident)}">{esc(name)}</a>' for ident, name, _ in sections)
    body = "\n".join(section(ident, name, html_body) for ident, name, html_body in sections)
    return template.substitute(
        title=esc(title), nav=nav, body=body, size=int(size), version=esc(version)
    )
