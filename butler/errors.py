"""Exceptions that the HTTP layer turns into JSON error responses.

Views and services raise these; the single error handler in ``butler.app`` renders them as
``{"statusCode", "error", "message"}`` (plus ``code`` when set), so no module formats error
bodies itself.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error whose message is safe to show to the caller."""

    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class ValidationFailed(BadRequest):
    """Request did not match the route's schema; keeps the original's error code."""

    def __init__(self, message: str):
        super().__init__(message, code="FST_ERR_VALIDATION")


class Unauthorized(ApiError):
    """No credential, or a wrong one: the answer carries ``WWW-Authenticate``."""

    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unprocessable(ApiError):
    """Well-formed, but at odds with what the service already holds (a reused key)."""

    status = 422


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class TooManyRequests(ApiError):
    status = 429


class UpstreamError(ApiError):
    """An upstream system (QRS, Engine, broker, a third-party service) failed or refused."""

    status = 502


class FeatureUnavailable(ApiError):
    """The feature is switched off or its upstream is not configured."""

    status = 503


class UpstreamTimeout(ApiError):
    status = 504
