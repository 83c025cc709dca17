"""Console sessions: an API key exchanged at sign-in for a random session token, kept in
PostgreSQL so every API process knows it, stored hashed (the token and the key).

The browser holds the token in an HttpOnly, SameSite=Strict cookie. A session ends at sign-out,
after `idle` without a request, after `lifetime` whatever happens, and as soon as its key is
revoked or expires. Each form carries a CSRF token derived from the session token, so it needs
no storage of its own and no other site can know it.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.keys import KEY_ID_CHARS, ApiKey, Keyring, Role, audit_actor
from services.referral.models import ConsoleSession

COOKIE = "csae_console"
SIGN_IN_COOKIE = "csae_console_sign_in"
"""Before sign-in: the CSRF token of the sign-in form (double submit: cookie and field)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session's forms: a MAC of the session token, which only the browser
    holding the cookie (and the server, given it) can compute."""
    return hmac.new(session_token.encode(), b"csae console csrf", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Compared in constant time; a missing value never matches."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Signed:
    """Who a valid session belongs to."""

    role: Role
    key_id: str
    token: str
    holder: str | None = None
    """The key's holder label (`csae keys create --holder`): on the audit trail only."""

    @property
    def actor(self) -> str:
        """As the API names a caller: `<role>:<key id>` (the case history and the logs)."""
        return f"{self.role.value}:{self.key_id}"

    @property
    def audit_actor(self) -> str:
        """As the API's audit entries name a caller: the key and its holder label."""
        return audit_actor(self.actor, self.holder)

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


async def start(*, session: AsyncSession, key: ApiKey, now: datetime) -> str:
    """A new session for `key`; the token for the cookie (stored hashed only). Not committed."""
    token = new_token()
    session.add(
        ConsoleSession(
            token_hash=token_hash(token),
            key_hash=key.hash,
            role=key.role.value,
            created_at=now,
            last_seen_at=now,
        )
    )
    return token


async def find(
    *,
    session: AsyncSession,
    token: str | None,
    keys: Keyring,
    now: datetime,
    idle: timedelta,
    lifetime: timedelta,
    touch: bool = True,
) -> Signed | None:
    """The session the cookie names, if still valid, touched as seen now unless `touch` is
    false (a page's own refresh is not a person's activity; not committed: the page's audit
    entry commits it); None for an unknown session, an idle or too old one (then
    deleted), or one whose key this process does not accept."""
    if not token or len(token) > 128:
        return None
    hashed = token_hash(token)
    stored = await session.get(ConsoleSession, hashed, with_for_update=False)
    if stored is None:
        return None
    if now - stored.last_seen_at >= idle or now - stored.created_at >= lifetime:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == hashed))
        await session.commit()
        return None
    key = keys.find_hashed(stored.key_hash, now)
    if key is None or key.role.value != stored.role:
        # Refused here, but not deleted: another process may not have read a new key yet
        # (within 2 s); a revoked key is refused by every process, and its row pruned later.
        return None
    if touch:
        await session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.token_hash == hashed)
            .values(last_seen_at=now)
        )
    return Signed(role=key.role, key_id=key.hash[:KEY_ID_CHARS], token=token, holder=key.holder)


async def end(*, session: AsyncSession, token: str) -> None:
    """Sign out: the session is deleted (not committed)."""
    await session.execute(
        delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token))
    )


async def prune(
    *, session: AsyncSession, now: datetime, idle: timedelta, lifetime: timedelta
) -> None:
    """Delete every session past its idle timeout or lifetime (at each sign-in; not
    committed)."""
    await session.execute(
        delete(ConsoleSession).where(
            or_(
                ConsoleSession.last_seen_at <= now - idle,
                ConsoleSession.created_at <= now - lifetime,
            )
        )
    )
