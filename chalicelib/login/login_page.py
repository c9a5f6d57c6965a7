"""The broker's login page (SPEC §3.5): shown by ``/authorize`` when no connection is chosen.

Stateless by design: nothing is stored for the page. Its "Continue with …" buttons are plain links
to ``/authorize?<the application's validated parameters>&connection=<name>`` and its identifier
form is a GET form to ``/authorize`` carrying the same parameters as hidden inputs plus
``login_hint``; ``/authorize`` re-validates everything it receives, so the page adds no trust.

No JavaScript at all, no third-party asset except the connections' own ``icon_url`` logos (https
only), one inline stylesheet allowed by its hash. ``form-action`` lists where the identifier
form's submission may end up after redirects (Chromium checks every redirect of a form
submission against it): the broker itself, the connections' authorization endpoints and the
application's redirect URI (single sign-on or an error sends the browser straight there).
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit

from chalice import Response

from chalicelib.login import i18n
from chalicelib.settings import get_settings

STYLE = (
    ":root{color-scheme:light}"
    "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
    "background:#f3f4f6;color:#111827;line-height:1.5}"
    "main{max-width:26rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.75rem;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{font-size:1.5rem;margin:0 0 .25rem}"
    ".app{margin:0 0 1rem;color:#374151}"
    ".intro{margin:0 0 1.25rem;color:#374151}"
    "label{display:block;font-weight:600;margin-bottom:.35rem}"
    "input[type=email]{box-sizing:border-box;width:100%;padding:.6rem .7rem;font-size:1rem;"
    "border:1px solid #6b7280;border-radius:.4rem;color:#111827;background:#fff}"
    "input[aria-invalid=true]{border-color:#b91c1c}"
    ".primary{display:block;width:100%;margin-top:1rem;padding:.65rem;font-size:1rem;"
    "font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:.4rem;cursor:pointer}"
    ".primary:hover{background:#1e40af}"
    ".message{margin:0 0 1rem;padding:.75rem;border-radius:.4rem;background:#fef2f2;"
    "color:#991b1b;border:1px solid #fca5a5}"
    ".divider{display:flex;align-items:center;gap:.75rem;margin:1.5rem 0;color:#4b5563}"
    ".divider::before,.divider::after{content:'';flex:1;border-top:1px solid #d1d5db}"
    "ul{list-style:none;margin:0;padding:0}"
    "li+li{margin-top:.6rem}"
    ".connection{display:flex;align-items:center;justify-content:center;gap:.6rem;"
    "padding:.6rem;border:1px solid #6b7280;border-radius:.4rem;color:#111827;"
    "text-decoration:none;font-weight:600;background:#fff}"
    ".connection:hover{background:#f3f4f6}"
    ".connection img{width:20px;height:20px;flex:none}"
    "a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #1d4ed8;"
    "outline-offset:2px}"
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

# A CSP source expression must not be able to smuggle another directive in (";", ",", spaces).
_ORIGIN = re.compile(r"^(https?://[A-Za-z0-9.\-\[\]:]+|[A-Za-z][A-Za-z0-9+.\-]*:)$")
_NOT_FORWARDED = ("connection", "login_hint")


def origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, ``scheme:`` for a private-use scheme."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme in ("http", "https"):
        if not host:
            return None
        if ":" in host:
            host = f"[{host}]"
        value = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    elif parts.scheme:
        value = f"{parts.scheme}:"
    else:
        return None
    return value.lower() if _ORIGIN.match(value) else None


def content_security_policy(form_targets: Iterable[str | None]) -> str:
    sources = ["'self'"]
    for target in form_targets:
        found = origin(target)
        if found and found not in sources:
            sources.append(found)
    return (f"default-src 'none'; style-src '{STYLE_HASH}'; img-src https:; "
            f"form-action {' '.join(sources)}; frame-ancestors 'none'; base-uri 'none'")


def page_headers(csp: str, lang: str) -> dict[str, str | list[str]]:
    """The headers of a server-rendered page in ``lang`` under ``csp`` (login and logout pages)."""
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Content-Language": lang,
        "Vary": "Accept-Language",
    }


def forwarded_params(raw: dict[str, str]) -> list[tuple[str, str]]:
    """The application's validated parameters, as the page passes them back to /authorize."""
    return [(name, value) for name, value in raw.items()
            if not name.startswith("__") and name not in _NOT_FORWARDED]


def has_domain_aliases(connection: dict) -> bool:
    return bool((connection.get("options") or {}).get("domain_aliases"))


def button_connections(connections: list[dict]) -> list[dict]:
    return sorted((c for c in connections if c.get("show_as_button")),
                  key=lambda c: (c.get("display_name") or c["name"]).lower())


def _icon(connection: dict) -> str:
    url = (connection.get("options") or {}).get("icon_url")
    if not isinstance(url, str) or not url.startswith("https://"):
        return ""  # the CSP allows https images only; anything else would be a broken image
    return (f'<img src="{html.escape(url)}" width="20" height="20" alt="" '
            f'referrerpolicy="no-referrer">')


def render(*, raw_params: dict[str, str], client: dict, redirect_uri: str,
           connections: list[dict], lang: str, login_hint: str | None = None,
           unmatched_domain: str | None = None) -> Response:
    """The page for one ``/authorize`` request; ``unmatched_domain``: the login_hint's email
    domain matched no connection (the page says so and keeps the address in the field)."""
    settings = get_settings()
    authorize_url = settings.url("authorize")
    forwarded = forwarded_params(raw_params)
    esc = html.escape
    t = lambda key, **values: esc(i18n.text(lang, key, **values))  # noqa: E731

    buttons = button_connections(connections)
    show_form = any(has_domain_aliases(c) for c in connections) or not buttons
    message = None
    if unmatched_domain is not None:
        message = i18n.text(lang, "no_domain" if buttons else "no_domain_no_buttons",
                            domain=unmatched_domain)
    parts = [f'<h1>{t("heading")}</h1>']
    if client.get("name"):
        parts.append(f'<p class="app">{t("application", name=client["name"])}</p>')
    if message:
        parts.append(f'<p class="message" id="login-message" role="alert">{esc(message)}</p>')
    if show_form:
        hidden = "".join(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
                         for name, value in forwarded)
        invalid = ' aria-invalid="true" aria-describedby="login-message"' if message else ""
        parts.append(
            f'<form method="get" action="{esc(authorize_url)}">'
            f'<p class="intro" id="login-intro">{t("intro")}</p>'
            f'{hidden}<label for="login_hint">{t("email_label")}</label>'
            f'<input type="email" id="login_hint" name="login_hint" required '
            f'autocomplete="email" spellcheck="false" autocapitalize="none" '
            f'value="{esc(login_hint or "")}"{invalid}>'
            f'<button type="submit" class="primary">{t("continue")}</button></form>')
    if buttons:
        if show_form:
            parts.append(f'<p class="divider">{t("or")}</p>')
        items = []
        for connection in buttons:
            href = authorize_url + "?" + urlencode([*forwarded, ("connection", connection["name"])])
            label = t("continue_with", name=connection.get("display_name") or connection["name"])
            items.append(f'<li><a class="connection" href="{esc(href)}" '
                         f'data-connection="{esc(connection["name"])}">{_icon(connection)}'
                         f'<span>{label}</span></a></li>')
        parts.append(f'<nav aria-label="{t("buttons_label")}"><ul>{"".join(items)}</ul></nav>')

    body = (f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<title>{t("title")}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><style>{STYLE}</style></head>'
            f'<body><main>{"".join(parts)}</main></body></html>')
    targets = [settings.issuer, redirect_uri,
               *[(c.get("options") or {}).get("authorization_endpoint") for c in connections]]
    return Response(body=body, status_code=200,
                    headers=page_headers(content_security_policy(targets), lang))
