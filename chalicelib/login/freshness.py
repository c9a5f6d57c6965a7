"""Authentication freshness (SPEC §3.1): what the upstream ID token says about the login itself
(``auth_time``, ``acr``, ``amr``; OIDC Core §2) and whether it satisfies the application's
``max_age`` or ``prompt=login``.

An application asking for ``max_age`` or ``prompt=login`` relies on the answer: the broker forwards
both upstream and then checks the upstream ``auth_time`` itself rather than trusting that the IdP
honoured them (OIDC Core §3.1.2.1 makes ``auth_time`` required with ``max_age``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

LEEWAY = 60  # seconds of clock skew allowed between the IdP and the broker
MAX_ACR_LENGTH = 256
MAX_AMR_VALUES = 16
MAX_AMR_LENGTH = 64


@dataclass(frozen=True)
class UpstreamAuthentication:
    auth_time: int | None  # None: absent, malformed or in the future
    acr: str | None
    amr: list[str] | None


class NotFresh(Exception):
    """The upstream login does not satisfy the application's request; the message is public."""


def upstream_authentication(claims: dict, now: int) -> UpstreamAuthentication:
    """``auth_time``/``acr``/``amr`` of a validated ID token; malformed values are dropped."""
    auth_time = claims.get("auth_time")
    when: int | None = None
    if (isinstance(auth_time, (int, float)) and not isinstance(auth_time, bool)
            and math.isfinite(auth_time) and 0 <= auth_time <= now + LEEWAY):
        # A login a few seconds "in the future" (skew) happened now, as far as max_age is concerned.
        when = min(int(auth_time), now)
    acr = claims.get("acr")
    if not (isinstance(acr, str) and 0 < len(acr) <= MAX_ACR_LENGTH and acr.isprintable()):
        acr = None
    amr = claims.get("amr")
    if not (isinstance(amr, list) and 0 < len(amr) <= MAX_AMR_VALUES
            and all(isinstance(v, str) and 0 < len(v) <= MAX_AMR_LENGTH and v.isprintable()
                    for v in amr)):
        amr = None
    return UpstreamAuthentication(when, acr, amr)


def check_freshness(*, max_age: int | None, prompt: str | None, started_at: int,
                    auth_time: int | None, now: int) -> None:
    """Raise :class:`NotFresh` when ``max_age`` or ``prompt=login`` is not met by ``auth_time``."""
    login_asked = "login" in (prompt or "").split()
    if max_age is None and not login_asked:
        return
    if auth_time is None:
        asked = "max_age" if max_age is not None else "prompt=login"
        raise NotFresh(f"The identity provider's ID token has no valid auth_time ({asked})")
    if max_age is not None and now - auth_time > max_age + LEEWAY:
        raise NotFresh("The identity provider's login is older than max_age allows (auth_time)")
    if login_asked and auth_time < started_at - LEEWAY:
        raise NotFresh("The identity provider did not authenticate the user again "
                       "(prompt=login, auth_time)")
