"""Every token and session lifetime in one place (seconds)."""

AUTHORIZATION_CODE = 60          # SPEC §3.3 step 7: ≤ 60 s
ACCESS_TOKEN = 3600              # user access tokens (RFC 9068 JWTs)
ID_TOKEN_DEFAULT = 36000         # per client: jwt_configuration.lifetime_in_seconds
SESSION_ABSOLUTE = 7 * 24 * 3600  # broker session, like Auth0's default maximum
SESSION_IDLE = 3 * 24 * 3600
LOGIN_TRANSACTION = 600          # SPEC §3.2: 10 minutes
