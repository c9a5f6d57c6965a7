"""The "Do you want to sign out?" page of ``/oidc/logout`` (RP-Initiated Logout §2: the OP SHOULD
ask when the request carries no ``id_token_hint``). Same look, language negotiation and CSP as the
login page: no script, the inline style by hash, ``form-action`` limited to the broker and the
application's logout return URL (Chromium checks the redirect that follows a form submission)."""
from __future__ import annotations

import html

from chalice import Response

from chalicelib.login import i18n
from chalicelib.login.login_page import STYLE, content_security_policy, page_headers
from chalicelib.logout.rp_logout import CONFIRM_PARAM, ConfirmLogout
from chalicelib.settings import get_settings


def render(confirm: ConfirmLogout, accept_language: str | None) -> Response:
    settings = get_settings()
    lang = i18n.negotiate(confirm.ui_locales, accept_language)
    esc = html.escape
    t = lambda key, **values: esc(i18n.text(lang, key, **values))  # noqa: E731

    hidden = "".join(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
                     for name, value in sorted(confirm.params.items()))
    parts = [f'<h1>{t("logout_heading")}</h1>']
    if confirm.application:
        parts.append(f'<p class="app">{t("logout_from_app", name=confirm.application)}</p>')
    parts.append(
        f'<form method="post" action="{esc(settings.url("oidc/logout"))}">'
        f'<p class="intro">{t("logout_intro")}</p>{hidden}'
        f'<input type="hidden" name="{CONFIRM_PARAM}" value="{esc(confirm.token)}">'
        f'<button type="submit" class="primary">{t("logout_button")}</button></form>'
        f'<p class="intro">{t("logout_stay")}</p>')
    body = (f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<title>{t("logout_title")}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><style>{STYLE}</style></head>'
            f'<body><main>{"".join(parts)}</main></body></html>')
    headers = page_headers(content_security_policy([settings.issuer, confirm.redirect_uri]), lang)
    headers["Vary"] = "Accept-Language, Cookie"  # the form carries a value derived from the cookie
    return Response(body=body, status_code=200, headers=headers)
