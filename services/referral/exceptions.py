"""The referral service's errors; the API maps each kind to one HTTP status in one handler."""


class ReferralError(Exception):
    """Root of the service's own errors."""


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
