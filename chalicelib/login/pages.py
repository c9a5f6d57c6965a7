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


def cookie(name: str, value: str, *, max_age: int, path: str = "/", same_site: str = "None") -> str:
    """``Secure`` always: browsers treat http://127.0.0.1 and localhost as secure contexts.
    ``SameSite=None`` where a cross-site form POST from the IdP must carry it (SPEC §3.2)."""
    return (f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; "
            f"SameSite={same_site}")


def read_cookies(header: str | None) -> dict[str, str]:
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
    return f"{name}=; Path={path}; Max-Age=0; HttpOnly; Secure; SameSite=None"


def style_hash(style: str) -> str:
    """A CSP ``'sha256-…'`` source for one inline ``<style>`` block."""
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
