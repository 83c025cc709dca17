"""API keys: only their SHA-256 and role are stored, in a private file."""

import hashlib
import stat
from pathlib import Path

import pytest

from services.referral.keys import Role, create_key, key_hash, load_keys

HASH_A = hashlib.sha256(b"synthetic-test-key-a").hexdigest()
HASH_B = hashlib.sha256(b"synthetic-test-key-b").hexdigest()


@pytest.mark.parametrize("role", list(Role))
def test_create_key_stores_its_hash_and_role_not_the_key(tmp_path: Path, role: Role) -> None:
    path = tmp_path / "keys"
    key = create_key(path, role)
    text = path.read_text()
    assert key not in text
    assert key.removeprefix("csae_") not in text
    assert text == f"{hashlib.sha256(key.encode()).hexdigest()} {role.value}\n"
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
