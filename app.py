"""The Chalice app: registers blueprints, nothing else. Logic lives in chalicelib/.

Where a route lives (chalicelib/api/):
  request_deadline.py         middleware: the outbound budget of every request
  request_log.py              middleware: the request's context for log events, its JSON log line
                              and its metrics
  well_known.py               /.well-known/openid-configuration, /.well-known/jwks.json,
                              /oauth/connection/{name}/.well-known/jwks.json
  login.py                    /authorize, /login/callback[/{connection}]
  oauth.py                    /oauth/token, /oauth/revoke
  userinfo.py                 /userinfo
  logout.py                   /oidc/logout, /v2/logout
  global_token_revocation.py  /oauth/global-token-revocation/connection/{name}
  upstream_logout.py          /login/backchannel-logout/{connection} (logout tokens from IdPs)
  try_and_demo.py             /login/try/..., /demo/...
  console.py                  /admin, /admin/{asset}
  events.py                   the back-channel logout queue (SQS, not HTTP)
  management_*.py             /api/v2/... (the Management API), one file per resource
                              (management_logs.py: /api/v2/logs, /api/v2/users/{id}/logs)
"""
from chalice import Chalice

from chalicelib.api import (
    console,
    events,
    global_token_revocation,
    login,
    logout,
    management_client_grants,
    management_clients,
    management_connections,
    management_logs,
    management_openapi,
    management_refresh_tokens,
    management_resource_servers,
    management_sessions,
    management_signing_keys,
    management_tenant_settings,
    management_users,
    oauth,
    request_deadline,
    request_log,
    try_and_demo,
    upstream_logout,
    userinfo,
    well_known,
)
from chalicelib.logs import configure_logging

app = Chalice(app_name="identity-broker")
configure_logging(app)
app.register_blueprint(request_log.bp)
app.register_blueprint(request_deadline.bp)
# OpenID Provider and OAuth endpoints, browser login and logout
app.register_blueprint(well_known.bp)
app.register_blueprint(login.bp)
app.register_blueprint(oauth.bp)
app.register_blueprint(userinfo.bp)
app.register_blueprint(logout.bp)
app.register_blueprint(global_token_revocation.bp)
app.register_blueprint(upstream_logout.bp)
app.register_blueprint(try_and_demo.bp)
app.register_blueprint(console.bp)
app.register_blueprint(events.bp)
# the Management API
app.register_blueprint(management_connections.bp)
app.register_blueprint(management_clients.bp)
app.register_blueprint(management_client_grants.bp)
app.register_blueprint(management_resource_servers.bp)
app.register_blueprint(management_users.bp)
app.register_blueprint(management_sessions.bp)
app.register_blueprint(management_refresh_tokens.bp)
app.register_blueprint(management_signing_keys.bp)
app.register_blueprint(management_tenant_settings.bp)
app.register_blueprint(management_logs.bp)
app.register_blueprint(management_openapi.bp)
