"""The Chalice app: registers blueprints, nothing else. Logic lives in chalicelib/."""
from chalice import Chalice

from chalicelib.api import (
    connection_keys,
    connection_status,
    console,
    events,
    gtr,
    login,
    logout,
    management,
    oauth,
    openapi,
    provider,
    resource_servers,
    sessions,
    signing_keys,
    tenant,
    users,
)
from chalicelib.logs import configure_logging

app = Chalice(app_name="identity-broker")
configure_logging(app)
app.register_blueprint(oauth.bp)
app.register_blueprint(management.bp)
app.register_blueprint(openapi.bp)
app.register_blueprint(provider.bp)
app.register_blueprint(login.bp)
app.register_blueprint(events.bp)
app.register_blueprint(gtr.bp)
app.register_blueprint(logout.bp)
app.register_blueprint(sessions.bp)
app.register_blueprint(users.bp)
app.register_blueprint(connection_keys.bp)
app.register_blueprint(resource_servers.bp)
app.register_blueprint(signing_keys.bp)
app.register_blueprint(tenant.bp)
app.register_blueprint(connection_status.bp)
app.register_blueprint(console.bp)
