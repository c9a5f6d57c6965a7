"""A relying party's back-channel logout endpoint (OIDC Back-Channel Logout 1.0 §2.5–§2.8).

An ``http.server`` on 127.0.0.1 in a thread. Each POST is validated the way a careful relying
party would: form body, ``logout_token`` signed with a key of the broker's JWKS (RS256 only),
header ``typ: logout+jwt``, ``iss``, ``aud`` = our client_id, ``iat``, ``exp`` no more than
two minutes after ``iat``, a ``jti`` never seen before, ``sub``, ``sid``, ``events`` holding the
back-channel-logout member with an object value, and no ``nonce``. A valid token gets the next
scripted status (``statuses``; 200 once the script runs out), an invalid one 400 (§2.8).

    with BclReceiver(client_id, issuer, jwks, statuses=[503, 503, 200]) as rp:
        ... rp.url ... rp.deliveries ...
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_LIFETIME = 120


class InvalidLogoutToken(Exception):
    pass


@dataclass
class Delivery:
    status: int
    claims: dict | None
    header: dict | None
    error: str | None
    content_type: str


@dataclass
class BclReceiver:
    client_id: str
    issuer: str
    jwks: dict
    statuses: list[int] = field(default_factory=list)
    path: str = "/backchannel-logout"
    deliveries: list[Delivery] = field(default_factory=list)
    _seen_jti: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- validation like a relying party -------------------------------------------------------

    def validate(self, token: str, now: float | None = None) -> tuple[dict, dict]:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        now = time.time() if now is None else now
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(self.jwks), algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise InvalidLogoutToken(f"signature: {type(exc).__name__}") from None
        header, claims = decoded.header, decoded.claims
        if header.get("typ") != "logout+jwt":
            raise InvalidLogoutToken("typ")
        if claims.get("iss") != self.issuer:
            raise InvalidLogoutToken("iss")
        audience = claims.get("aud")
        if self.client_id not in (audience if isinstance(audience, list) else [audience]):
            raise InvalidLogoutToken("aud")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + 60:
            raise InvalidLogoutToken("iat")
        if not isinstance(exp, int) or exp <= now or exp > iat + MAX_LIFETIME:
            raise InvalidLogoutToken("exp")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidLogoutToken("jti")
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
            raise InvalidLogoutToken("sub/sid")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
            raise InvalidLogoutToken("events")
        if "nonce" in claims:
            raise InvalidLogoutToken("nonce")  # §2.4: a logout token must not carry one
        with self._lock:
            if jti in self._seen_jti:
                raise InvalidLogoutToken("jti replayed")
            self._seen_jti.add(jti)
        return header, claims

    def _answer(self, content_type: str, body: bytes) -> int:
        header = claims = error = None
        try:
            if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
                raise InvalidLogoutToken("content type")
            tokens = parse_qs(body.decode("utf-8")).get("logout_token") or []
            if len(tokens) != 1:
                raise InvalidLogoutToken("logout_token missing or repeated")
            header, claims = self.validate(tokens[0])
        except InvalidLogoutToken as exc:
            error = str(exc)
        with self._lock:
            status = 400 if error else (self.statuses.pop(0) if self.statuses else 200)
            self.deliveries.append(Delivery(status, claims, header, error, content_type))
        return status

    # --- the server ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if 200 <= d.status < 300]

    def start(self) -> BclReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 64 * 1024))
                if self.path != receiver.path:
                    status = 404
                else:
                    status = receiver._answer(self.headers.get("Content-Type") or "", body)
                payload = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"bcl-receiver-{self.client_id[:8]}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BclReceiver:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
