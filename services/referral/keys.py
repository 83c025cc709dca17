"""API keys: stored as SHA-256 hashes with a role, one per line, in `CSAE_API_KEYS_FILE`.

A line is `<sha256 hex> <role>` and then optional fields, each `name=value`: `created`,
`expires` and `revoked` (ISO 8601 times, UTC) and `holder` (a label, percent-encoded). A key is
refused from its `expires` or `revoked` time on; a `revoked` time in the future is a rotation's
grace period. `CSAE_API_KEYS_FILE` may also name a directory (a mounted Kubernetes Secret): every
file in it whose name does not start with `.` is read, in name order.

`Keyring` is what the API holds: it re-reads the file or directory when its inode, size or mtime
changes, checked at most every `KEYS_RELOAD_SECONDS`, so every API process sees a new, revoked or
expired key within that time without a restart.
"""

import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, unquote

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_FIELDS = ("created", "expires", "revoked", "holder")
KEYS_RELOAD_SECONDS = 2.0
"""How often, at most, an API process checks whether its keys file changed."""
KEY_ID_CHARS = 12
"""A key's id: the first characters of its hash (as in the case history's actor)."""
HOLDER_CHARS = 64
"""The longest holder label a new key takes (the audit trail's actor carries it whole)."""


def audit_actor(actor: str, holder: str | None) -> str:
    """`actor` (`<role>:<key id>`) and, when the key has one, its holder label: the audit
    trail's actor. Never the logs' or the case history's, which name the key alone."""
    label = "".join(c for c in holder or "" if c.isprintable())[:HOLDER_CHARS]
    return f"{actor} ({label})" if label else actor


class Role(StrEnum):
    VIEWER = "viewer"
    INVESTIGATOR = "investigator"
    ADMIN = "admin"


class KeyFileError(ValueError):
    """The keys file cannot be read or changed as asked."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key: its hash, never the key."""

    hash: str
    role: Role
    holder: str | None = None
    created: datetime | None = None
    expires: datetime | None = None
    revoked: datetime | None = None
    """From this time on the key is refused (a future time: a rotation's grace period)."""

    @property
    def key_id(self) -> str:
        return self.hash[:KEY_ID_CHARS]

    def valid_at(self, now: datetime) -> bool:
        return all(end is None or now < end for end in (self.expires, self.revoked))

    def line(self) -> str:
        fields = [self.hash, self.role.value]
        for name, at in (("created", self.created), ("expires", self.expires)):
            if at is not None:
                fields.append(f"{name}={_iso(at)}")
        if self.revoked is not None:
            fields.append(f"revoked={_iso(self.revoked)}")
        if self.holder:
            fields.append(f"holder={quote(self.holder, safe='')}")
        return " ".join(fields)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a time needs a timezone")
    return at


def parse_line(text: str, where: str) -> ApiKey | None:
    """The key a line names; None for a blank or comment line; a malformed line is an error."""
    text = text.split("#", 1)[0].strip()
    if not text:
        return None
    parts = text.split()
    roles = {role.value for role in Role}
    if len(parts) < 2 or not _SHA256.fullmatch(parts[0]) or parts[1] not in roles:
        raise KeyFileError(
            f"{where}: expected '<sha256 hex> <role> [name=value ...]' "
            f"with a role of {sorted(roles)}"
        )
    fields: dict[str, str] = {}
    for part in parts[2:]:
        name, sep, value = part.partition("=")
        if not sep or name not in _FIELDS or name in fields or not value:
            raise KeyFileError(f"{where}: expected fields named {list(_FIELDS)}, once each")
        fields[name] = value
    try:
        times = {n: _time(fields[n]) for n in ("created", "expires", "revoked") if n in fields}
    except ValueError:
        raise KeyFileError(f"{where}: a time is not ISO 8601 with a timezone") from None
    holder = unquote(fields["holder"]) if "holder" in fields else None
    return ApiKey(parts[0].lower(), Role(parts[1]), holder=holder, **times)


def _sources(path: Path) -> list[Path]:
    """The files to read: `path`, or the visible files of a directory (a mounted Secret)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
    return [path] if path.exists() else []


def read_keys(path: Path | None) -> list[ApiKey]:
    """Every key in the file (or directory), revoked and expired ones included."""
    if path is None:
        return []
    keys: list[ApiKey] = []
    for source in _sources(path):
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            key = parse_line(line, f"{source}:{number}")
            if key is not None:
                keys.append(key)
    return keys


def load_keys(path: Path | None) -> dict[str, Role]:
    """Key hash → role, for every key listed (whatever its expiry or revocation)."""
    return {key.hash: key.role for key in read_keys(path)}


def _fingerprint(path: Path | None) -> tuple[tuple[str, int, int, int, int], ...]:
    """What changes when a file is rewritten, appended to or swapped by symlink (stat follows
    links, so a Secret's `..data` swap shows as a new inode)."""
    if path is None:
        return ()
    try:
        found = []
        for source in _sources(path):
            st = source.stat()
            found.append((source.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(found)
    except OSError:
        return (("?", 0, 0, 0, 0),)


class Keyring:
    """The keys an API process accepts, re-read when their file changes (checked at most every
    `interval` seconds: one `stat` per file, so a request pays nothing in between)."""

    def __init__(
        self,
        path: Path | None,
        *,
        interval: float = KEYS_RELOAD_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self.monotonic = monotonic
        self.fingerprint = _fingerprint(path)
        self.keys = read_keys(path)  # a malformed file at start stops the process
        self.checked = monotonic()

    def _refresh(self) -> None:
        now = self.monotonic()
        if now - self.checked < self.interval:
            return
        self.checked = now
        fingerprint = _fingerprint(self.path)
        if fingerprint == self.fingerprint:
            return
        try:
            keys = read_keys(self.path)
        except (OSError, ValueError) as exc:  # keep the keys we had; say so, by type only
            log.error("API keys file not reloaded", extra={"error": type(exc).__name__})
            return
        self.fingerprint = fingerprint
        self.keys = keys
        log.info("API keys reloaded", extra={"keys": len(keys)})

    def find(self, key: str, now: datetime) -> ApiKey | None:
        """The valid stored key matching `key`; every hash is compared in constant time."""
        return self.find_hashed(key_hash(key), now)

    def find_hashed(self, hashed: str, now: datetime) -> ApiKey | None:
        """The valid stored key with this hash (a console session holds the hash, never the
        key): refused from the moment the key is revoked or expires."""
        self._refresh()
        found: ApiKey | None = None
        for stored in self.keys:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(stored.hash, hashed):
                found = stored
        return found if found is not None and found.valid_at(now) else None


def _writable(path: Path) -> None:
    if path.is_dir():
        raise KeyFileError(
            f"{path} is a directory (a mounted Secret?): change the file the Secret is made from"
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (a lock file beside the keys, hidden from a directory read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace(path: Path, lines: list[str]) -> None:
    """Write the whole file anew and swap it in, so a reader sees the old or the new, not half."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def create_key(
    path: Path,
    role: Role,
    *,
    holder: str | None = None,
    expires: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """Make a new key, add its hash, role and details to `path`, and return the key (shown
    once)."""
    _writable(path)
    if holder is not None and (
        not 1 <= len(holder) <= HOLDER_CHARS or not all(c.isprintable() for c in holder)
    ):
        raise KeyFileError(
            f"a holder label is 1 to {HOLDER_CHARS} characters, none of them control characters"
        )
    key = "csae_" + secrets.token_urlsafe(32)
    created = now or datetime.now(UTC)
    stored = ApiKey(key_hash(key), role, holder=holder, created=created, expires=expires)
    with _locked(path):
        _replace(path, [*_lines(path), stored.line()])
    return key


def _matching(keys: list[ApiKey], key_id: str) -> ApiKey:
    if len(key_id) < 8 or not re.fullmatch(r"[0-9a-fA-F]+", key_id):
        raise KeyFileError("a key id is at least 8 hex characters of its hash (see `keys list`)")
    found = [key for key in keys if key.hash.startswith(key_id.lower())]
    if len(found) != 1:
        raise KeyFileError(f"{len(found)} keys have an id starting {key_id}: name exactly one")
    return found[0]


def revoke_key(path: Path, key_id: str, *, at: datetime) -> ApiKey:
    """Refuse the key whose id starts with `key_id` from `at` on; the key as now stored."""
    _writable(path)
    with _locked(path):
        lines = _lines(path)
        target = _matching(read_keys(path), key_id)
        revoked = target.revoked if target.revoked is not None and target.revoked <= at else at
        changed = replace(target, revoked=revoked)
        out = []
        for number, line in enumerate(lines, start=1):
            key = parse_line(line, f"{path}:{number}")
            if key is not None and key.hash == target.hash:
                comment = line.partition("#")[2]
                line = changed.line() + (f"  #{comment}" if comment else "")
            out.append(line)
        _replace(path, out)
    return changed


def rotate_key(
    path: Path,
    key_id: str,
    *,
    now: datetime,
    grace: timedelta = timedelta(0),
    expires: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key for the same role and holder; the old one refused from `now + grace`."""
    old = _matching(read_keys(path), key_id)
    if not old.valid_at(now):
        raise KeyFileError(f"key {old.key_id} is already revoked or expired")
    new = create_key(path, old.role, holder=old.holder, expires=expires, now=now)
    return new, revoke_key(path, old.key_id, at=now + grace)
