"""The Chalice app: registers blueprints, nothing else. Logic lives in chalicelib/."""
from chalice import Chalice

from chalicelib.api import login, management, oauth, openapi, provider
from chalicelib.logs import configure_logging

app = Chalice(app_name="identity-broker")
configure_logging(app)
app.register_blueprint(oauth.bp)
app.register_blueprint(management.bp)
app.register_blueprint(openapi.bp)
app.register_blueprint(provider.bp)
app.register_blueprint(login.bp)
