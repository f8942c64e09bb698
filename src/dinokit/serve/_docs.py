"""The API's documentation page, rendered from its OpenAPI schema on the server.

FastAPI's own pages load Swagger UI / ReDoc from a CDN; this one is plain HTML with no script
and no outside request, so it works offline like the rest of dinokit. The machine-readable
schema is at ``/openapi.json`` for client generators and Swagger UI elsewhere.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body { margin: 0 auto; max-width: 980px; padding: 0 24px 48px;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; }
h1 { font-size: 22px; } h2 { font-size: 17px; border-bottom: 1px solid #d2d2d7; margin-top: 28px; }
.op { margin: 14px 0; padding: 8px 12px; border: 1px solid #e3e3e8; border-radius: 6px; }
.method { display: inline-block; min-width: 52px; font-weight: 600; color: #0a6cbd; }
code { font-size: 13px; } table { border-collapse: collapse; margin: 6px 0; }
td, th { text-align: left; padding: 2px 14px 2px 0; vertical-align: top; }
.note { color: #6e6e73; }
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list[{_type(schema.get('items', {}))}]"
    return str(schema.get("type", schema.get("format", "any")))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    rows = [
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
        f"<td>{escape(_type(p.get('schema', {})))}</td>"
        f"<td>{'required' if p.get('required') else 'optional'}</td>"
        f"<td class=note>{escape(p.get('description', ''))}</td></tr>"
        for p in op.get("parameters", [])
    ]
    body = op.get("requestBody", {}).get("content", {})
    for kind, content in body.items():
        rows.append(
            f"<tr><td>body</td><td>{escape(kind)}</td>"
            f"<td>{escape(_type(content.get('schema', {})))}</td><td></td><td></td></tr>"
        )
    answers = ", ".join(escape(code) for code in op.get("responses", {}))
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    text = escape(op.get("description") or op.get("summary", ""))
    return (
        f"<div class=op><span class=method>{method.upper()}</span> <code>{escape(path)}</code>"
        f"<p>{text}</p>{table}<p class=note>responses: {answers}</p></div>"
    )


def _models(schemas: dict[str, Any]) -> str:
    parts = []
    for name, schema in sorted(schemas.items()):
        fields = "".join(
            f"<tr><td><code>{escape(field)}</code></td><td>{escape(_type(spec))}</td>"
            f"<td class=note>{escape(spec.get('description', ''))}</td></tr>"
            for field, spec in schema.get("properties", {}).items()
        )
        parts.append(f"<h3 id='{escape(name)}'>{escape(name)}</h3><table>{fields}</table>")
    return "".join(parts)


def docs_page(spec: dict[str, Any]) -> str:
    """An HTML page describing every operation and data shape of an OpenAPI ``spec``."""
    info = spec.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(path, method, op))
    sections = "".join(f"<h2>{escape(tag)}</h2>{''.join(ops)}" for tag, ops in by_tag.items())
    models = _models(spec.get("components", {}).get("schemas", {}))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info.get('title', 'API'))} API</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(info.get('title', 'API'))} {escape(info.get('version', ''))} API</h1>"
        f"<p>{escape(info.get('summary', ''))} The OpenAPI schema is at "
        "<a href='/openapi.json'>/openapi.json</a>. With a token set, send "
        "<code>Authorization: Bearer TOKEN</code>. Errors are "
        '<code>{"detail": "one line"}</code> with a 4xx status.</p>'
        f"{sections}<h2>Data shapes</h2>{models}</body></html>"
    )
