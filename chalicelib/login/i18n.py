"""The login and logout pages' languages: English and French (SPEC §3.5).

The language is chosen from ``ui_locales`` (OIDC Core §3.1.2.1: space-separated BCP 47 tags in
order of preference) first, then from the browser's ``Accept-Language`` (RFC 9110 §12.5.4, with
q-values); the first enabled language when neither names one. Only the languages the tenant
settings enable (``enabled_locales``, SPEC §2.4) are offered; the first of them is the default.
"""
from __future__ import annotations

import re

from chalicelib.registry.tenant import cached_tenant_settings

DEFAULT = "en"
SUPPORTED = ("en", "fr")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sign in",
        "heading": "Sign in",
        "intro": "Enter your work email address to continue with your organisation's sign-in.",
        "email_label": "Email address",
        "continue": "Continue",
        "or": "or",
        "continue_with": "Continue with {name}",
        "no_domain": "No sign-in method is set up for the domain {domain}. Check the address, "
                     "or choose one of the options below.",
        "no_domain_no_buttons": "No sign-in method is set up for the domain {domain}. "
                                "Check the address.",
        "buttons_label": "Other ways to sign in",
        "application": "Signing in to {name}",
        "logout_title": "Sign out",
        "logout_heading": "Do you want to sign out?",
        "logout_from_app": "{name} asks to sign you out.",
        "logout_intro": "Signing out ends your session for every application that uses this "
                        "sign-in.",
        "logout_button": "Sign out",
        "logout_stay": "If you did not ask to sign out, close this page: you stay signed in.",
    },
    "fr": {
        "title": "Connexion",
        "heading": "Connexion",
        "intro": "Saisissez votre adresse e-mail professionnelle pour continuer avec la "
                 "connexion de votre organisation.",
        "email_label": "Adresse e-mail",
        "continue": "Continuer",
        "or": "ou",
        "continue_with": "Continuer avec {name}",
        "no_domain": "Aucune méthode de connexion n'est configurée pour le domaine {domain}. "
                     "Vérifiez l'adresse ou choisissez l'une des options ci-dessous.",
        "no_domain_no_buttons": "Aucune méthode de connexion n'est configurée pour le domaine "
                                "{domain}. Vérifiez l'adresse.",
        "buttons_label": "Autres moyens de connexion",
        "application": "Connexion à {name}",
        "logout_title": "Déconnexion",
        "logout_heading": "Voulez-vous vous déconnecter ?",
        "logout_from_app": "{name} demande à vous déconnecter.",
        "logout_intro": "La déconnexion met fin à votre session pour toutes les applications qui "
                        "utilisent cette connexion.",
        "logout_button": "Se déconnecter",
        "logout_stay": "Si vous n'avez pas demandé à vous déconnecter, fermez cette page : "
                       "vous restez connecté.",
    },
}

_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")


def _primary(tag: str, enabled: tuple[str, ...]) -> str | None:
    tag = tag.strip()
    if not tag or tag == "*" or not _TAG.match(tag):
        return None
    primary = tag.split("-", 1)[0].lower()
    return primary if primary in enabled else None


def _from_ui_locales(ui_locales: str | None, enabled: tuple[str, ...]) -> str | None:
    for tag in (ui_locales or "")[:256].split():
        found = _primary(tag, enabled)
        if found:
            return found
    return None


def _from_accept_language(header: str | None, enabled: tuple[str, ...]) -> str | None:
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "")[:1024].split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        found = _primary(tag, enabled)
        if found and 0 < quality <= 1:
            ranked.append((-quality, index, found))
    return min(ranked)[2] if ranked else None


def enabled_locales() -> tuple[str, ...]:
    """The tenant's enabled languages that have messages, in its order (first: the default)."""
    enabled = tuple(lang for lang in cached_tenant_settings().enabled_locales if lang in SUPPORTED)
    return enabled or (DEFAULT,)


def negotiate(ui_locales: str | None, accept_language: str | None,
              enabled: tuple[str, ...] | None = None) -> str:
    """One of ``enabled`` (default: the tenant's enabled locales): ``ui_locales`` wins, then
    ``Accept-Language``, then the first enabled language."""
    enabled = enabled_locales() if enabled is None else enabled
    return (_from_ui_locales(ui_locales, enabled) or _from_accept_language(accept_language, enabled)
            or enabled[0])


def text(lang: str, key: str, **values: str) -> str:
    """A message in ``lang``; values are inserted as they are (the caller escapes the result)."""
    template = MESSAGES.get(lang, MESSAGES[DEFAULT]).get(key) or MESSAGES[DEFAULT][key]
    return template.format(**values) if values else template
