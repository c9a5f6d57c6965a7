""""Try" a connection (admin console) and the ``make run`` demo: a real login through the broker
that ends on an "It works!" page instead of in an application.

Design: a built-in confidential application (``TRY_CLIENT_ID``, its secret random and never kept
in clear) whose only callback is the broker's own ``/login/try/callback``. A try goes through
exactly the code every application uses:

1. ``GET /api/v2/connections/{id}/try`` (management token, ``read:connections`` and
   ``update:connections``) makes sure the built-in application exists and is enabled on the
   connection, stores a single-use *ticket*
   (5 minutes) and returns ``{"url": "{issuer}login/try?ticket=…"}``.
2. ``GET /login/try?ticket=…`` consumes the ticket, binds this browser with a cookie
   (``broker_try``, HttpOnly, path ``/login/try``), stores the flow's state, nonce and PKCE
   verifier, and sends the browser to ``/authorize`` with ``connection`` and ``prompt=login``.
3. The normal login runs (upstream IdP, the connection's own ``/login/callback/{name}`` with all
   its checks, mix-up defence included) and ends at
   ``/login/try/callback`` with a code, or with ``error``/``error_description`` naming the failed
   check. The code is redeemed *internally* (no token is minted: the grant is revoked at once),
   the test session is ended, and the result (profile, the upstream ID token's claims, the checks)
   is stored for 15 minutes under a random id bound to the browser cookie.
4. ``GET /login/try/result?id=…`` shows it to that browser only. Tokens never appear: the page
   shows the claims of the upstream ID token the broker validated.

Where the claims come from: the session keeps the upstream ID token only sealed under its cookie
secret (chalicelib/sessions.py: the token exchange would take it as a credential), and step 3
runs without that cookie (the route reads only ``broker_try``). So the callback stores, for the
Try application's sessions only (and the local demo's), the decoded claims as JSON
(:func:`session_claims_fields`: no signature, nothing anyone can present), and revoking the
session right after step 3 removes them.

The demo (``/demo``, only when ``BROKER_DEMO`` is on, as ``make run`` sets it) is the same flow for
the demo application, without ``connection`` (so the login page shows) and keeping the session.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import os
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from chalicelib.login.pages import cookie, error_page, redirect, strict_page
from chalicelib.settings import get_settings
from chalicelib.store import try_logins
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.tokens import digest, random_token, s256, same

log = logging.getLogger(__name__)

TRY_CLIENT_ID = "broker-try-connection"
TICKET_LIFETIME = 300
FLOW_LIFETIME = 600
RESULT_LIFETIME = 900
MAX_CLAIMS = 16384        # the upstream claims a Try session keeps (JSON characters)


@dataclass(frozen=True)
class Kind:
    name: str         # "try" or "demo"
    path: str         # base path of its routes, relative to the issuer
    cookie: str


TRY = Kind("try", "login/try", "broker_try")
DEMO = Kind("demo", "demo", "broker_demo")


# --- the built-in applications ------------------------------------------------------------------

def ensure_try_client() -> str:
    """The built-in confidential application of the Try flow (recreated if someone deleted it)."""
    from chalicelib.management import clients
    from chalicelib.store import clients as client_records

    callback = get_settings().url(TRY.path + "/callback")
    current = clients.get_client(TRY_CLIENT_ID)
    if current is not None and current.get("callbacks") == [callback]:
        return TRY_CLIENT_ID
    record = clients._resolve({
        "name": "Try connection (built-in)",
        "description": "Used by the admin console's Try button; its secret is never known.",
        "app_type": "regular_web", "token_endpoint_auth_method": "client_secret_post",
        "callbacks": [callback], "grant_types": ["authorization_code"],
        "client_metadata": {"broker_builtin": "try"},
    })
    record["client_id"] = TRY_CLIENT_ID
    # A confidential client whose secret nobody knows: its codes are only ever redeemed here.
    record["client_secret_hash"] = clients.hash_secret(clients.new_client_secret())
    record["created_at"] = record["updated_at"] = clients._now_iso()
    client_records.put(record)
    return TRY_CLIENT_ID


def demo_client() -> dict | None:
    """The demo application ``make run`` created (client_metadata ``broker_builtin: demo``)."""
    from chalicelib.management import clients

    found = [c for c in clients.list_clients()
             if (c.get("client_metadata") or {}).get("broker_builtin") == "demo"]
    return max(found, key=lambda c: c.get("created_at") or "") if found else None


def demo_enabled() -> bool:
    return (os.environ.get("BROKER_DEMO") or "").strip().lower() in ("1", "true", "yes", "on")


# --- 1. the ticket -----------------------------------------------------------------------------

def create_ticket(connection_id: str, now: int) -> str:
    """The Management API's half: returns the URL to open in a browser."""
    from chalicelib.management import connections

    connection = connections.require_connection(connection_id)
    client_id = ensure_try_client()
    if client_id not in (connection.get("enabled_clients") or []):
        connections.set_enabled_clients(connection_id, [{"client_id": client_id, "status": True}])
    ticket = random_token(32)
    try_logins.put_ticket(ticket, connection_id, now + TICKET_LIFETIME)
    return get_settings().url(TRY.path) + "?" + urlencode({"ticket": ticket})


def _cookie_path(kind: Kind) -> str:
    return urlsplit(get_settings().issuer).path.rstrip("/") + "/" + kind.path


# --- 2. start ----------------------------------------------------------------------------------

def start_try(ticket: str | None, now: int):
    from chalicelib.registry import connections

    if not ticket or len(ticket) > 128:
        return _gone("This test link is incomplete.")
    connection_id = try_logins.consume_ticket(ticket, now)
    if connection_id is None:
        return _gone("This test link was already used or has expired.")
    connection = connections.get_connection(connection_id)
    if connection is None:
        return _gone("The connection no longer exists.")
    return _start(TRY, TRY_CLIENT_ID, now, connection_name=connection["name"], prompt="login")


def start_demo(now: int):
    client = demo_client() if demo_enabled() else None
    if client is None:
        return error_page(404, "Not found", "The demo is not set up: run `make run` with Node.js.")
    return _start(DEMO, client["client_id"], now)


def _gone(detail: str):
    return error_page(400, "Test link not usable",
                      detail + " Start the test again from the admin console.")


def _start(kind: Kind, client_id: str, now: int, *, connection_name: str | None = None,
           prompt: str | None = None):
    settings = get_settings()
    binding, state, nonce, verifier = (random_token(32), random_token(32), random_token(16),
                                       random_token(48))
    try_logins.put_flow(state, try_logins.TryFlow(kind=kind.name, client_id=client_id,
                                                  browser_digest=digest(binding),
                                                  verifier=verifier,
                                                  connection_name=connection_name),
                        now + FLOW_LIFETIME)
    params = {"client_id": client_id, "redirect_uri": settings.url(kind.path + "/callback"),
              "response_type": "code", "scope": "openid profile email", "state": state,
              "nonce": nonce, "code_challenge": s256(verifier), "code_challenge_method": "S256"}
    if connection_name:
        params["connection"] = connection_name
    if prompt:
        params["prompt"] = prompt
    binding_cookie = cookie(kind.cookie, binding, max_age=RESULT_LIFETIME, path=_cookie_path(kind),
                            same_site="Lax")
    return redirect(settings.url("authorize") + "?" + urlencode(params), 302, [binding_cookie])


# --- 3. the callback ---------------------------------------------------------------------------

def finish(kind: Kind, params: dict[str, str], binding: str | None, now: int):
    settings = get_settings()
    state = params.get("state")
    if not state or len(state) > 256 or not binding or len(binding) > 128:
        return _gone("This test was started in another browser or has expired.")
    flow = try_logins.consume_flow(state, digest(binding), kind.name, now)
    if flow is None:
        return _gone("This test was started in another browser, has expired or was already "
                     "finished.")
    connection_name = flow.connection_name
    if params.get("iss") not in (None, settings.issuer):
        result = _failure("start", "invalid_request", "The response came from another issuer",
                          connection_name)
    elif params.get("error"):
        result = _failure_from(params.get("error", "")[:64],
                               _printable(params.get("error_description") or "")[:300],
                               connection_name)
    else:
        result = _inspect(params.get("code"), flow, kind, now)
    result_id = random_token(32)
    try_logins.put_result(result_id, try_logins.TryResult(
        kind=kind.name, browser_digest=digest(binding),
        result=json.dumps(result, separators=(",", ":"), default=str)), now + RESULT_LIFETIME)
    log.info("%s flow finished: %s", kind.name, "ok" if result["ok"] else result["failed"])
    return redirect(settings.url(kind.path + "/result") + "?" + urlencode({"id": result_id}), 303)


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


def _inspect(code: str | None, flow: try_logins.TryFlow, kind: Kind, now: int) -> dict:
    """Redeem the code here (no token minted), read the profile and the upstream claims."""
    from chalicelib import sessions, users
    from chalicelib.registry.connections import get_connection
    from chalicelib.provider import grant_store

    settings = get_settings()
    record = grant_store.find_code(code or "", now) if code else None
    if (not code or record is None or record.get("consumed_at")
            or record.get("client_id") != flow.client_id
            or record.get("redirect_uri") != settings.url(kind.path + "/callback")
            or record.get("code_challenge") != s256(flow.verifier)):
        return _failure("profile", "server_error", "The broker returned no usable code")
    try:
        grant_store.run([grant_store.consume_code_operation(code, now),
                         grant_store.grant_is_active_check(record["grant_id"], now)])
    except ConditionFailed:
        return _failure("profile", "server_error", "The broker's code was already used")
    grant_store.revoke_grant(record["grant_id"], now, f"{kind.name}_inspected")
    user = users.get_user(record["user_id"])
    session = sessions.get_session(record["sid"], now) or {}
    connection = get_connection(session.get("connection_id", "")) or {}
    upstream = _stored_claims(session)
    if kind is TRY and session:
        sessions.revoke_session(record["sid"], now)  # a test login leaves no SSO session behind
    return {
        "ok": True,
        "connection": _connection_summary(connection),
        "profile": users.view(user) if user else None,
        "upstream_claims": upstream,
        "checks": _success_checks(connection, upstream),
    }


def session_claims_fields(client: dict, claims: dict) -> dict[str, str]:
    """The session field the callback adds for a login of the Try application (or of the demo,
    when ``make run`` turned it on): the validated upstream claims as JSON, at most
    :data:`MAX_CLAIMS` characters. Nothing for any other application."""
    builtin = (client.get("client_metadata") or {}).get("broker_builtin")
    if not ((builtin == "try" and client.get("client_id") == TRY_CLIENT_ID)
            or (builtin == "demo" and demo_enabled())):
        return {}
    text = json.dumps(claims, separators=(",", ":"), sort_keys=True, default=str)
    return {"upstream_claims": text} if len(text) <= MAX_CLAIMS else {}


def _stored_claims(session: dict) -> dict | None:
    """The upstream claims the callback kept for this session (see :func:`session_claims_fields`);
    a session from before sealing has the ID token in clear instead."""
    text = session.get("upstream_claims")
    if not isinstance(text, str):
        return _claims_of(session.get("upstream_id_token"))
    try:
        claims = json.loads(text)
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _claims_of(id_token: str | None) -> dict | None:
    """The payload of an ID token the broker already validated (signature checked then)."""
    if not id_token or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _connection_summary(connection: dict) -> dict | None:
    if not connection:
        return None
    options = connection.get("options") or {}
    return {"name": connection.get("name"), "display_name": connection.get("display_name"),
            "type": options.get("type"), "issuer": options.get("issuer")}


# --- checks ------------------------------------------------------------------------------------

CHECKS: list[tuple[str, str, str]] = [
    # (key, what the broker checked, how to fix it when it fails)
    ("start", "The broker accepted the login request",
     "Check that the connection exists and try again; a temporary outage clears by itself."),
    ("state", "The IdP's answer matched this login (state, browser binding, used once)",
     "Finish the login at the identity provider within 10 minutes, in the browser that started it."),
    ("callback", "The answer arrived at the connection's own callback URL (mix-up defence)",
     "Register {callback} as the redirect URI of the application at the identity provider; an "
     "IdP registered with the shared /login/callback must send the iss parameter (RFC 9207)."),
    ("iss_param", "The answer came from the connection's issuer (RFC 9207 iss parameter)",
     "The IdP's answer names another issuer: set the connection's discovery URL (or issuer) to "
     "this identity provider."),
    ("idp", "The identity provider accepted the login and answered with a code or an ID token",
     "Read the IdP's message. At the IdP, check the application: its client_id, the allowed "
     "redirect URI ({callback}) and the allowed response types (id_token for front channel, "
     "code for back channel)."),
    ("code_exchange", "The authorization code was exchanged at the token endpoint",
     "Check the connection's client_secret and token_endpoint_auth_method against the "
     "application at the IdP, and that the token endpoint is reachable from the broker."),
    ("jwks", "The IdP's signing keys (jwks_uri) could be fetched",
     "Check that jwks_uri (from discovery) is reachable from the broker."),
    ("format", "The ID token is a signed JWT",
     "Configure the IdP to return signed (not encrypted) ID tokens."),
    ("alg", "The signing algorithm is allowed",
     "Add the IdP's signing algorithm to the connection's id_token_signed_response_algs, or have "
     "the IdP sign with RS256."),
    ("kid", "The signing key is in the connection's JWKS",
     "The token was signed with a key the IdP does not publish at jwks_uri: check the discovery "
     "URL points at this identity provider."),
    ("signature", "The signature verifies",
     "The signature does not match the IdP's published keys: check jwks_uri and the issuer."),
    ("iss", "iss equals the connection's issuer",
     "Set the connection's issuer (or discovery URL) to exactly the iss the IdP puts in its tokens."),
    ("aud", "aud (and azp) name the connection's client_id",
     "Set the connection's client_id to the client_id of the application registered at the IdP."),
    ("exp", "The token is current (exp, iat, nbf; 60 s leeway)",
     "Check the clocks of the IdP and the broker, and the IdP's ID token lifetime."),
    ("sub", "sub is present",
     "The IdP must put a sub claim in the ID token."),
    ("nonce", "nonce matches the login request",
     "The IdP must return the nonce it was sent; for a back-channel IdP that drops it, set "
     "send_back_channel_nonce to false."),
    ("at_hash", "at_hash / c_hash match",
     "The token hash claims do not match: check the IdP's ID token signing settings."),
    ("freshness", "The IdP logged the user in afresh (auth_time, as prompt=login asks)",
     "The test asks for a fresh login (prompt=login), as applications may (prompt=login, "
     "max_age): the IdP must then put auth_time in its ID token (OIDC Core §3.1.2.1). Enable "
     "auth_time at the IdP (Okta, Entra ID and Keycloak send it)."),
    ("userinfo", "The userinfo response belongs to the same user",
     "The userinfo endpoint must be reachable and return the ID token's sub."),
    ("profile", "The claims were mapped and the user profile was stored",
     "Check the connection's attribute_map; then try again."),
]
LABELS = {key: label for key, label, _ in CHECKS}
FIXES = {key: fix for key, _, fix in CHECKS}
_ID_TOKEN_CHECKS = {"format": "format", "crit": "format", "typ": "format", "alg": "alg",
                    "kid": "kid", "signature": "signature", "iss": "iss", "aud": "aud",
                    "azp": "aud", "exp": "exp", "iat": "exp", "nbf": "exp", "sub": "sub",
                    "nonce": "nonce", "at_hash": "at_hash", "c_hash": "at_hash"}


def failed_check(error: str, description: str) -> str:
    """Which check an error sent back by /authorize or /login/callback names (their messages are
    public and stable: chalicelib/login/callback.py, id_token.py, upstream.py)."""
    text = description.lower()
    if "id token is invalid (" in text:
        inner = text.split("id token is invalid (", 1)[1].split(")", 1)[0]
        return _ID_TOKEN_CHECKS.get(inner, "format")
    if "mix-up" in text:
        return "callback"
    if "auth_time" in text:
        return "freshness"
    if "another issuer" in text or "lacks the iss parameter" in text:
        return "iss_param"
    if "keys are unavailable" in text:
        return "jwks"
    if ("token endpoint" in text or "authorization code" in text or "token type" in text
            or "client secret" in text or "private_key_jwt" in text):
        return "code_exchange"
    if "userinfo" in text:
        return "userinfo"
    if "could not be recorded" in text or "could not be completed" in text:
        return "profile"
    if error in ("invalid_request", "unauthorized_client", "unsupported_response_type",
                 "invalid_scope", "temporarily_unavailable") and "identity provider" not in text:
        return "start"
    return "idp"


def _applicable(connection: dict, upstream: dict | None) -> dict[str, str]:
    """Checks that do not apply to this connection (key -> why)."""
    from chalicelib.login.mapping import needs_userinfo

    options = (connection or {}).get("options") or {}
    skipped = {}
    back = options.get("type") == "back_channel"
    if not back:
        skipped["code_exchange"] = "front channel: the ID token came in the form POST"
    if not (upstream or {}).get("at_hash") and not (upstream or {}).get("c_hash"):
        skipped["at_hash"] = "the ID token carries no at_hash or c_hash"
    if not (back and needs_userinfo(connection) and options.get("userinfo_endpoint")):
        skipped["userinfo"] = "the claim mapping does not need userinfo"
    if back and not options.get("send_back_channel_nonce", True):
        skipped["nonce"] = "send_back_channel_nonce is off"
    return skipped


def _success_checks(connection: dict, upstream: dict | None) -> list[dict]:
    skipped = _applicable(connection, upstream)
    return [{"key": key, "label": label,
             "outcome": "not applicable" if key in skipped else "passed",
             "detail": skipped.get(key, "")} for key, label, _ in CHECKS]


def _failure(key: str, error: str, description: str, connection_name: str | None = None) -> dict:
    checks, reached = [], False
    for name, label, _ in CHECKS:
        if name == key:
            outcome, reached = "failed", True
        else:
            outcome = "not run" if reached else "passed"
        checks.append({"key": name, "label": label, "outcome": outcome,
                       "detail": description if name == key else ""})
    # Each connection has its own redirect URI (RFC 9700 §4.4): name the one to register.
    settings = get_settings()
    callback = (settings.connection_callback_url(connection_name) if connection_name
                else settings.url("login/callback/") + "{connection name}")
    fix = FIXES[key].replace("{callback}", callback)
    return {"ok": False, "failed": key, "error": error, "description": description, "fix": fix,
            "checks": checks}


def _failure_from(error: str, description: str, connection_name: str | None = None) -> dict:
    return _failure(failed_check(error, description), error, description, connection_name)


# --- 4. the result page ------------------------------------------------------------------------

STYLE = (
    "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
    "background:#f3f4f6;color:#111827;line-height:1.5}"
    "main{max-width:52rem;margin:2rem auto;padding:2rem;background:#fff;border-radius:.75rem;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{margin-top:0}h1.ok{color:#166534}h1.failed{color:#991b1b}"
    "h2{font-size:1.15rem;margin-top:1.75rem}"
    ".problem{padding:1rem;border:1px solid #fca5a5;background:#fef2f2;border-radius:.4rem}"
    "pre{background:#f3f4f6;color:#111827;padding:1rem;border-radius:.4rem;overflow:auto;"
    "font-size:.9rem}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align:top}"
    ".passed{color:#166534;font-weight:600}.failed{color:#991b1b;font-weight:600}"
    ".skipped{color:#4b5563}"
)
_MARKS = {"passed": ("✓", "passed"), "failed": ("✗", "failed"), "not run": ("–", "skipped"),
          "not applicable": ("–", "skipped")}


def show(kind: Kind, result_id: str | None, binding: str | None, now: int):
    if not result_id or len(result_id) > 128 or not binding or len(binding) > 128:
        return _not_yours()
    stored = try_logins.get_result(result_id, now)
    if stored is None or stored.kind != kind.name or not same(stored.browser_digest,
                                                              digest(binding)):
        return _not_yours()
    return render_result(json.loads(stored.result), kind)


def _not_yours():
    return error_page(403, "Result not available",
                      "This result belongs to the browser that started the test, or it has "
                      "expired. Start the test again from the admin console.")


def _json_block(value, label_id: str) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return f'<pre aria-labelledby="{label_id}" tabindex="0">{html.escape(text)}</pre>'


def render_result(result: dict, kind: Kind):
    esc = html.escape
    connection = result.get("connection") or {}
    parts = []
    if result["ok"]:
        parts.append('<h1 class="ok">It works!</h1>')
        if connection:
            parts.append(f'<p>The login through connection <strong>{esc(connection.get("name") or "")}'
                         f'</strong> ({esc(connection.get("type") or "")}, issuer '
                         f'<code>{esc(connection.get("issuer") or "")}</code>) succeeded and every '
                         'check passed.</p>')
        if kind is DEMO:
            parts.append("<p>The demo application received an authorization code from the broker; "
                         "this is who signed in.</p>")
    else:
        label = LABELS.get(result["failed"], result["failed"])
        parts.append('<h1 class="failed">The test failed</h1>')
        parts.append(f'<section class="problem" aria-labelledby="problem-title">'
                     f'<h2 id="problem-title">Failed check: {esc(label)}</h2>'
                     f'<p id="failure-reason">{esc(result.get("error") or "")}: '
                     f'{esc(result.get("description") or "")}</p>'
                     f'<p id="failure-fix"><strong>How to fix:</strong> {esc(result["fix"])}</p>'
                     '</section>')
    rows = []
    for check in result["checks"]:
        mark, css = _MARKS.get(check["outcome"], ("–", "skipped"))
        detail = f' <span class="skipped">({esc(check["detail"])})</span>' if check["detail"] else ""
        rows.append(f'<tr><td class="{css}"><span aria-hidden="true">{mark}</span> '
                    f'{esc(check["outcome"])}</td><td>{esc(check["label"])}{detail}</td></tr>')
    parts.append('<h2 id="checks-title">Checks the broker ran</h2>'
                 '<table aria-labelledby="checks-title"><thead><tr><th scope="col">Outcome</th>'
                 f'<th scope="col">Check</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if result["ok"]:
        parts.append('<h2 id="profile-title">Normalized profile</h2>'
                     + _json_block(result.get("profile"), "profile-title"))
        parts.append('<h2 id="claims-title">Upstream ID token claims</h2>'
                     + (_json_block(result["upstream_claims"], "claims-title")
                        if result.get("upstream_claims") is not None
                        else "<p>The upstream ID token's claims were too large to keep.</p>"))
    title = "It works!" if result["ok"] else "The test failed"
    return strict_page(200, title, f"<main>{''.join(parts)}</main>", style=STYLE)
