"""Publishing flags from a JSON Lines file, for replays and demos."""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from services.pipeline.kafka import ensure_topics, new_producer, produce_all
from services.pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class Published:
    flag_id: str | None
    sha256: str


def refresh(line: bytes, now: datetime) -> bytes:
    """A copy of a flag with a new flag_id and current timestamps; other lines unchanged."""
    try:
        document = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return line
    if not isinstance(document, dict) or "flag_id" not in document:
        return line
    document["flag_id"] = str(uuid4())
    stamp = now.isoformat()
    document["detected_at"] = stamp
    document["published_at"] = stamp
    return json.dumps(document, separators=(",", ":")).encode()


def _flag_id(value: bytes) -> str | None:
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    flag_id = document.get("flag_id") if isinstance(document, dict) else None
    return flag_id if isinstance(flag_id, str) else None


async def publish_lines(settings: Settings, lines: list[bytes]) -> list[Published]:
    """Send each line as one message to the flags topic, keyed by its flag_id when it has one."""
    await ensure_topics(settings)
    producer = new_producer(settings)
    await producer.start()
    try:
        published = [Published(_flag_id(v), hashlib.sha256(v).hexdigest()) for v in lines]
        await produce_all(
            producer,
            [
                (settings.topic_flags, p.flag_id.encode() if p.flag_id else None, value)
                for p, value in zip(published, lines, strict=True)
            ],
        )
        return published
    finally:
        await producer.stop()


def read_lines(path: Path, *, fresh: bool) -> list[bytes]:
    now = datetime.now(UTC)
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return [refresh(line, now) for line in lines] if fresh else lines


async def publish_file(settings: Settings, path: Path, *, fresh: bool) -> int:
    return len(await publish_lines(settings, read_lines(path, fresh=fresh)))
