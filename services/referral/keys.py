"""API keys: stored as SHA-256 hashes with a role, one per line, in `CSAE_API_KEYS_FILE`."""

import hashlib
import os
import re
import secrets
from enum import StrEnum
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Role(StrEnum):
    VIEWER = "viewer"
    INVESTIGATOR = "investigator"
    ADMIN = "admin"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: Path | None) -> dict[str, Role]:
    """Key hash → role. Blank lines and `#` comments are skipped; a malformed line is an error."""
    if path is None or not path.exists():
        return {}
    keys: dict[str, Role] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        roles = {role.value for role in Role}
        if len(parts) != 2 or not _SHA256.fullmatch(parts[0]) or parts[1] not in roles:
            raise ValueError(
                f"{path}:{number}: expected '<sha256 hex> <role>' with a role of {sorted(roles)}"
            )
        keys[parts[0].lower()] = Role(parts[1])
    return keys


def create_key(path: Path, role: Role) -> str:
    """Make a new key, append its hash and role to `path`, and return the key (shown once)."""
    key = "csae_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(f"{key_hash(key)} {role.value}\n")
    return key
