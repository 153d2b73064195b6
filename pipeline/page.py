"""The conventions of refinery's self-contained HTML pages (a run's statistics, a training's
loss and evaluations): inline CSS, no script, every value escaped, and a Content-Security-Policy
that forbids scripts and remote loads in case anything ever slipped through."""

from __future__ import annotations

import html

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = (
    "\n"
    'body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;'
    "color:#1d2330;padding:0 16px}\n"
    "h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce4;"
    "padding-bottom:4px}\n"
    "h3{font-size:15px;margin:18px 0 6px} .muted{color:#5b6475}\n"
    "table{border-collapse:collapse;width:100%;margin:6px 0} th,td{padding:4px 8px;"
    "border-bottom:1px solid #eceef2;text-align:right}\n"
    "th:first-child,td:first-child{text-align:left} th{background:#f5f6f8;font-weight:600}\n"
    ".partial{background:#fff4d6;border:1px solid #e6c25a;padding:8px 12px;border-radius:4px;margin:12px 0}\n"
    ".bar{fill:#3b6fd8} .drop{fill:#d8573b} .kept{fill:#3b9d5a} .axis{stroke:#9aa3b2;"
    "stroke-width:1} svg text{font-size:11px;fill:#3a4150}\n"
    ".hists{display:flex;flex-wrap:wrap;gap:16px} .hist{border:1px solid #eceef2;border-radius:4px;"
    "padding:6px}\n"
    ".example{border-left:3px solid #d8573b;background:#fafafb;margin:6px 0;padding:6px 10px}\n"
    ".example pre{white-space:pre-wrap;word-break:break-word;margin:4px 0 0;"
    "font:12px/1.4 ui-monospace,monospace;max-height:12em;overflow:auto}\n"
)


def esc(value: object) -> str:
    """Any value as escaped HTML text (None as nothing)."""
    return html.escape("" if value is None else str(value), quote=True)
