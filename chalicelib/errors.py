"""The error model: each error knows its public code, message and HTTP status.

Two families, because two protocols meet here:
- :class:`ApiError` is Auth0's Management API body ``{statusCode, error, message, errorCode}``.
- :class:`OAuthError` is RFC 6749 §5.2's ``{error, error_description}``.
Messages are public. Internal detail goes to the log, never into a response.
"""
from __future__ import annotations

from http import HTTPStatus


class ConfigurationError(Exception):
    """The deployment is misconfigured (bad environment variable)."""


class ApiError(Exception):
    status = 400
    error_code = "invalid_body"

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_code is not None:
            self.error_code = error_code

    def body(self) -> dict:
        return {
            "statusCode": self.status,
            "error": HTTPStatus(self.status).phrase,
            "message": self.message,
            "errorCode": self.error_code,
        }


class InvalidBody(ApiError):
    status, error_code = 400, "invalid_body"


class InvalidQueryString(ApiError):
    status, error_code = 400, "invalid_query_string"


class InvalidToken(ApiError):
    status, error_code = 401, "invalid_token"


class InsufficientScope(ApiError):
    status, error_code = 403, "insufficient_scope"


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class TooLarge(ApiError):
    status, error_code = 413, "payload_too_large"


class ServiceUnavailable(ApiError):
    status, error_code = 503, "temporarily_unavailable"
    # What the dependency said, when it said something (DynamoDB's error code, e.g.
    # "ValidationException"): for the code, never shown to a caller.
    cause: str = ""


class OAuthError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status: int = 400, headers: dict | None = None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}
