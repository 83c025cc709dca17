"""The referral service's errors; the API maps each kind to one HTTP status in one handler."""

from collections.abc import Sequence


class ReferralError(Exception):
    """Root of the service's own errors."""


class Unauthenticated(ReferralError):
    """No valid key or session (401)."""


class Forbidden(ReferralError):
    """The caller's role may not do this (403)."""


class NotFound(ReferralError):
    """The case, packet or flag does not exist (404)."""


class Conflict(ReferralError):
    """The request conflicts with the current state (409)."""


class InvalidRequest(ReferralError):
    """The request is malformed in a way validation could not catch (400)."""


class IllegalTransition(Conflict):
    """The case cannot move from its current state to the one asked for (409)."""

    def __init__(self, message: str, current: str, allowed: Sequence[str]) -> None:
        super().__init__(message)
        self.current = current
        self.allowed = list(allowed)


_HTTP_STATUS: dict[type[ReferralError], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
}


def http_status(exc: ReferralError) -> int:
    """The HTTP status an error answers with (its nearest kind's; 400 for any other)."""
    return next((_HTTP_STATUS[k] for k in type(exc).__mro__ if k in _HTTP_STATUS), 400)


class ConcurrentChange(Exception):
    """Another transaction changed what this one had locked or checked: retry the batch. Not a
    request's error: the worker retries it as it would a database that went away."""
