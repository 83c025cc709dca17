"""`csae publish --fresh`: replays get new identities, and bad lines stay bad."""

import json
from datetime import UTC, datetime
from pathlib import Path

from schemas.flag import ModerationFlag
from services.pipeline.publish import read_lines, refresh
from tests.factories import flag_document

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_refreshed_flag_has_a_new_id_and_current_timestamps_and_is_still_valid() -> None:
    original = flag_document()
    fresh = json.loads(refresh(json.dumps(original).encode(), NOW))
    flag = ModerationFlag.model_validate(fresh)
    assert str(flag.flag_id) != original["flag_id"]
    assert flag.detected_at == flag.published_at == NOW
    assert fresh["subject"] == original["subject"]


def test_lines_that_are_not_flags_are_published_as_they_are() -> None:
    for line in [b'{"flag_id": "x"', b"[1, 2]", b'{"no_id": 1}', b"\xff\xfe"]:
        assert refresh(line, NOW) == line


def test_blank_lines_are_skipped_and_every_other_line_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "flags.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \nnot json\n')
    assert read_lines(path, fresh=False) == [b'{"a": 1}', b"not json"]
