from tests.support.idp_fixtures import oidc_idp  # noqa: F401
