"""Minimal server-rendered pages (error pages for now); strict CSP, no third-party assets."""
from __future__ import annotations

import html

from chalice import Response

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def error_page(status: int, title: str, detail: str) -> Response:
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;
color:#1a1a1a}}h1{{font-size:1.4rem}}code{{background:#f2f2f2;padding:.1rem .3rem}}</style>
</head><body><main><h1>{html.escape(title)}</h1><p id="error-detail">{html.escape(detail)}</p>
</main></body></html>"""
    return Response(body=body, status_code=status,
                    headers={"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS})


def redirect(location: str, status: int = 302, cookies: list[str] | None = None) -> Response:
    headers: dict = {"Location": location, "Cache-Control": "no-store", "Pragma": "no-cache",
                     "Referrer-Policy": "no-referrer"}
    if cookies:
        headers["Set-Cookie"] = cookies
    return Response(body="", status_code=status, headers=headers)


# Cookie names: the broker writes and reads its cookies only through cookie(), expired_cookie()
# and read_cookies(), which add and strip the __Host- prefix over https (SPEC §4). A __Host-
# cookie is Secure, Path=/ and has no Domain (RFC 6265bis §4.1.3.2), so a sibling subdomain
# cannot plant or overwrite one; unprefixed cookies are ignored there for the same reason.
HOST_PREFIX = "__Host-"


def _host_prefixed() -> bool:
    from chalicelib.settings import get_settings

    return get_settings().issuer.startswith("https://")


def cookie(name: str, value: str, *, max_age: int, path: str = "/", same_site: str = "None") -> str:
    """``Secure`` always: browsers treat http://127.0.0.1 and localhost as secure contexts.
    ``SameSite=None`` where a cross-site form POST from the IdP must carry it (SPEC §3.2).
    Over https the name gets the ``__Host-`` prefix, which requires ``Path=/``."""
    if _host_prefixed():
        name, path = HOST_PREFIX + name, "/"
    return (f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; "
            f"SameSite={same_site}")


def read_cookies(header: str | None) -> dict[str, str]:
    """The broker's cookies by their unprefixed names (see :func:`cookie`)."""
    jar = _parse_cookies(header)
    if not _host_prefixed():
        return jar
    return {name[len(HOST_PREFIX):]: value for name, value in jar.items()
            if name.startswith(HOST_PREFIX)}


def _parse_cookies(header: str | None) -> dict[str, str]:
    from http.cookies import CookieError, SimpleCookie

    jar: dict[str, str] = {}
    if not header or len(header) > 8192:
        return jar
    try:
        parsed = SimpleCookie()
        parsed.load(header)
    except CookieError:
        # Fall back to a lenient split: one malformed cookie must not hide ours.
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                jar.setdefault(name, value)
        return jar
    return {name: morsel.value for name, morsel in parsed.items()}


def expired_cookie(name: str, path: str = "/") -> str:
    if _host_prefixed():
        name, path = HOST_PREFIX + name, "/"
    return f"{name}=; Path={path}; Max-Age=0; HttpOnly; Secure; SameSite=None"


FORM_POST_SCRIPT = "document.forms[0].submit();"


def form_post_page(action: str, fields: dict[str, str], cookies: list[str] | None = None) -> Response:
    """OAuth 2.0 Form Post Response Mode §2: an HTML form that the browser POSTs to the
    application's redirect_uri at once. The CSP allows exactly this one script (by hash); it sets
    no ``form-action``, because browsers apply it to the redirects after the POST too and the
    application may well redirect elsewhere (the page holds one fixed, escaped form). Without
    JavaScript a Continue button does it."""
    esc = html.escape
    inputs = "".join(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
                     for name, value in fields.items())
    body = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Continue</title>'
            '<meta name="referrer" content="no-referrer"></head><body>'
            f'<form method="post" action="{esc(action)}">{inputs}'
            '<noscript><p>JavaScript is off: press Continue to return to the application.</p>'
            '<button type="submit">Continue</button></noscript></form>'
            f"<script>{FORM_POST_SCRIPT}</script></body></html>")
    csp = (f"default-src 'none'; script-src {style_hash(FORM_POST_SCRIPT)}; "
           "frame-ancestors 'none'; base-uri 'none'")
    headers: dict = {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS,
                     "Content-Security-Policy": csp}
    if cookies:
        headers["Set-Cookie"] = cookies
    return Response(body=body, status_code=200, headers=headers)


def web_message_script(origin: str, response: dict[str, str]) -> str:
    """The one script of a web_message page: post the authorization response to the window that
    framed (silent authentication) or opened (popup login) this page, addressed to ``origin`` so
    no other site's window can read it. The JSON is ASCII (``ensure_ascii``: U+2028/U+2029
    escaped) with ``<``, ``>`` and ``&`` escaped too, so no value can end the script element."""
    import json

    message = json.dumps({"type": "authorization_response", "response": response},
                         separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    target = json.dumps(origin)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        message, target = message.replace(raw, escaped), target.replace(raw, escaped)
    return f"(window.opener||window.parent).postMessage({message},{target});"


def web_message_page(origin: str, response: dict[str, str],
                     cookies: list[str] | None = None) -> Response:
    """``response_mode=web_message``: the CSP lets exactly this page's script run (by its hash)
    and lets only ``origin`` frame it (the SPA's hidden iframe); nothing else is allowed. No
    ``X-Frame-Options``: it cannot name an origin, and ``frame-ancestors`` supersedes it."""
    script = web_message_script(origin, response)
    body = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Continue</title>'
            '<meta name="referrer" content="no-referrer"></head><body>'
            f"<script>{script}</script></body></html>")
    csp = (f"default-src 'none'; script-src {style_hash(script)}; frame-ancestors {origin}; "
           "base-uri 'none'")
    headers: dict = {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS,
                     "Content-Security-Policy": csp}
    del headers["X-Frame-Options"]
    if cookies:
        headers["Set-Cookie"] = cookies
    return Response(body=body, status_code=200, headers=headers)


def style_hash(style: str) -> str:
    """A CSP ``'sha256-…'`` source for one inline ``<style>`` or ``<script>`` block."""
    import base64
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"


def strict_page(status: int, title: str, body_html: str, *, style: str, lang: str = "en",
                cookies: list[str] | None = None) -> Response:
    """A server-rendered page with no script at all: the CSP allows only its own inline style
    (by hash), no image, no form, no frame. ``body_html`` must already be escaped."""
    csp = (f"default-src 'none'; style-src {style_hash(style)}; img-src 'none'; "
           "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
    body = (f'<!doctype html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><style>{style}</style></head>'
            f"<body>{body_html}</body></html>")
    headers: dict = {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS,
                     "Content-Security-Policy": csp}
    if cookies:
        headers["Set-Cookie"] = cookies
    return Response(body=body, status_code=status, headers=headers)
