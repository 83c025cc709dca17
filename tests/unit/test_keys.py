"""API keys: only their SHA-256 and role are stored, in a private file."""

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.referral.keys import (
    KeyFileError,
    Keyring,
    Role,
    create_key,
    key_hash,
    load_keys,
    read_keys,
    revoke_key,
    rotate_key,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

HASH_A = hashlib.sha256(b"synthetic-test-key-a").hexdigest()
HASH_B = hashlib.sha256(b"synthetic-test-key-b").hexdigest()


@pytest.mark.parametrize("role", list(Role))
def test_create_key_stores_its_hash_and_role_not_the_key(tmp_path: Path, role: Role) -> None:
    path = tmp_path / "keys"
    key = create_key(path, role, now=NOW)
    text = path.read_text()
    assert key not in text
    assert key.removeprefix("csae_") not in text
    expected = f"{hashlib.sha256(key.encode()).hexdigest()} {role.value} created={NOW.isoformat()}"
    assert text == expected + "\n"
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()


def test_created_keys_round_trip_through_load_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "keys"
    viewer = create_key(path, Role.VIEWER)
    admin = create_key(path, Role.ADMIN)
    assert viewer != admin
    assert load_keys(path) == {key_hash(viewer): Role.VIEWER, key_hash(admin): Role.ADMIN}


def test_created_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    create_key(path, Role.INVESTIGATOR)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_comments_and_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        f"# keys for the test\n\n   \n{HASH_A} viewer  # the dashboard\n\t{HASH_B.upper()} admin\n"
    )
    assert load_keys(path) == {HASH_A: Role.VIEWER, HASH_B: Role.ADMIN}


@pytest.mark.parametrize(
    ("lines", "number"),
    [
        ([f"{HASH_A}"], 1),
        ([f"{HASH_A} viewer extra"], 1),
        ([f"{HASH_A} viewer", "abc123 viewer"], 2),
        (["# comment", "", f"{HASH_A}viewer"], 3),
        pytest.param(
            [f"{HASH_A} viewer", f"{HASH_B} superuser"],
            2,
            id="unknown-role",
        ),
        pytest.param(
            ["z" * 64 + " viewer"],
            1,
            id="not-hex",
        ),
    ],
)
def test_malformed_line_is_an_error_naming_the_line(
    tmp_path: Path, lines: list[str], number: int
) -> None:
    path = tmp_path / "keys"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:{number}:"):
        load_keys(path)


def test_missing_or_unset_file_has_no_keys(tmp_path: Path) -> None:
    assert load_keys(tmp_path / "absent") == {}
    assert load_keys(None) == {}


def test_holder_and_expiry_are_stored_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    expires = NOW + timedelta(days=90)
    key = create_key(path, Role.ADMIN, holder="Ana B. #on call", expires=expires, now=NOW)
    assert "#on call" not in path.read_text()  # encoded, so not taken for a comment
    [stored] = read_keys(path)
    assert (stored.hash, stored.role, stored.holder) == (
        key_hash(key),
        Role.ADMIN,
        "Ana B. #on call",
    )
    assert (stored.created, stored.expires, stored.revoked) == (NOW, expires, None)
    assert stored.valid_at(expires - timedelta(seconds=1))
    assert not stored.valid_at(expires)


def test_revoke_refuses_only_that_key_and_keeps_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# staff keys\n{HASH_A} viewer  # dashboard\n")
    os.chmod(path, 0o600)
    other = create_key(path, Role.ADMIN, now=NOW)
    revoked = revoke_key(path, HASH_A[:12], at=NOW)
    assert revoked.revoked == NOW
    ring = Keyring(path)
    assert ring.find("synthetic-test-key-a", NOW) is None
    assert ring.find(other, NOW) is not None
    text = path.read_text()
    assert text.startswith("# staff keys\n")
    assert "# dashboard" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("key_id", ["", "abc", "zzzzzzzzzzzz", "0" * 12])
def test_revoke_needs_an_id_naming_exactly_one_key(tmp_path: Path, key_id: str) -> None:
    path = tmp_path / "keys"
    create_key(path, Role.VIEWER, now=NOW)
    before = path.read_text()
    with pytest.raises(KeyFileError):
        revoke_key(path, key_id, at=NOW)
    assert path.read_text() == before


def test_rotate_makes_a_key_for_the_same_role_and_holder_and_ends_the_old_after_grace(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys"
    old = create_key(path, Role.INVESTIGATOR, holder="team-a", now=NOW)
    new, ended = rotate_key(path, key_hash(old)[:12], now=NOW, grace=timedelta(hours=1))
    assert ended.revoked == NOW + timedelta(hours=1)
    ring = Keyring(path)
    for at, old_ok in ((NOW, True), (NOW + timedelta(hours=1), False)):
        assert (ring.find(old, at) is not None) is old_ok
        found = ring.find(new, at)
        assert found is not None
        assert (found.role, found.holder) == (Role.INVESTIGATOR, "team-a")
    with pytest.raises(KeyFileError, match="already"):
        rotate_key(path, key_hash(old)[:12], now=NOW + timedelta(hours=2))


def test_keyring_rereads_a_changed_file_no_more_often_than_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    ticks = [0.0]
    ring = Keyring(path, interval=2.0, monotonic=lambda: ticks[0])
    key = create_key(path, Role.VIEWER, now=NOW)
    ticks[0] = 1.9
    assert ring.find(key, NOW) is None  # not yet checked again
    ticks[0] = 2.0
    assert ring.find(key, NOW) is not None
    revoke_key(path, key_hash(key)[:12], at=NOW)
    ticks[0] = 4.0
    assert ring.find(key, NOW) is None


def test_keyring_keeps_its_keys_when_the_file_turns_malformed(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    key = create_key(path, Role.VIEWER, now=NOW)
    ticks = [0.0]
    ring = Keyring(path, interval=1.0, monotonic=lambda: ticks[0])
    path.write_text("not a key line\n")
    ticks[0] = 5.0
    assert ring.find(key, NOW) is not None


def test_a_secret_directory_is_read_and_its_symlink_swap_seen(tmp_path: Path) -> None:
    """A Kubernetes Secret volume: `api-keys -> ..data/api-keys`, `..data -> ..<timestamp>`,
    updated by pointing `..data` at a new directory."""
    mount = tmp_path / "secret"
    first, second = mount / "..2026_12_02_1", mount / "..2026_12_02_2"
    first.mkdir(parents=True)
    second.mkdir()
    old = create_key(first / "api-keys", Role.VIEWER, now=NOW)
    (mount / "..data").symlink_to(first.name)
    (mount / "api-keys").symlink_to("..data/api-keys")
    ticks = [0.0]
    by_dir = Keyring(mount, interval=1.0, monotonic=lambda: ticks[0])
    by_file = Keyring(mount / "api-keys", interval=1.0, monotonic=lambda: ticks[0])
    assert by_dir.find(old, NOW) is not None
    assert by_file.find(old, NOW) is not None

    (second / "api-keys").write_text((first / "api-keys").read_text())
    new = create_key(second / "api-keys", Role.ADMIN, now=NOW)
    revoke_key(second / "api-keys", key_hash(old)[:12], at=NOW)
    (mount / "..data_tmp").symlink_to(second.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    ticks[0] = 1.0
    for ring in (by_dir, by_file):
        assert ring.find(old, NOW) is None
        assert ring.find(new, NOW) is not None
    with pytest.raises(KeyFileError, match="directory"):
        create_key(mount, Role.VIEWER)


def test_old_two_field_lines_still_work(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{key_hash('legacy')} investigator\n")
    found = Keyring(path).find("legacy", NOW)
    assert found is not None
    assert found.role is Role.INVESTIGATOR
    assert found.holder is None


@pytest.mark.parametrize(
    "fields",
    ["expires=tomorrow", "expires=2027-01-01T00:00:00", "owner=x", "holder=a holder=b", "holder="],
)
def test_malformed_fields_are_an_error(tmp_path: Path, fields: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{HASH_A} viewer {fields}\n")
    with pytest.raises(ValueError, match=rf"{path}:1:"):
        load_keys(path)
