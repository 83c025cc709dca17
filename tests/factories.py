"""Synthetic test data made by the tests: no real people, content or hash-list entries."""

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from schemas.flag import ModerationFlag

DETECTED_AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def synthetic_hash(seed: str, algorithm: str = "sha256") -> str:
    """A hash of a made-up string: shaped like a real digest, matching nothing real."""
    return hashlib.new(algorithm, f"synthetic-test-{seed}".encode()).hexdigest()


def signal(category: str = "grooming", confidence: float = 0.95, **extra: Any) -> dict[str, Any]:
    return {"category": category, "label": f"test_{category}", "confidence": confidence, **extra}


def image(content_id: str = "content-test-1", *, public: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {
        "content_id": content_id,
        "media_type": "image",
        "hashes": {
            "md5": synthetic_hash(content_id, "md5"),
            "sha1": synthetic_hash(content_id, "sha1"),
            "sha256": synthetic_hash(content_id),
            "pdq": synthetic_hash(content_id + "-pdq"),
        },
        "uploaded_at": "2026-11-26T08:55:00+00:00",
    }
    if public:
        content["url"] = f"https://cdn.example.org/{content_id}"
        content["public"] = True
    return content


def flag_document(**overrides: Any) -> dict[str, Any]:
    """A valid `ModerationFlag` as JSON-ready data; top-level keys may be overridden."""
    document: dict[str, Any] = {
        "schema_version": 1,
        "flag_id": str(uuid4()),
        "detected_at": DETECTED_AT.isoformat(),
        "published_at": DETECTED_AT.isoformat(),
        "source": {"system": "test-classifier", "version": "1.0.0", "kind": "classifier"},
        "platform": {"org_id": "org-test", "service": "chat", "country": "GB"},
        "signals": [signal()],
        "content": [],
        "subject": {"account_id": f"acct-test-{uuid4().hex[:8]}", "ips": ["192.0.2.1"]},
    }
    document.update(overrides)
    return document


def make_flag(**overrides: Any) -> ModerationFlag:
    return ModerationFlag.model_validate(flag_document(**overrides))


def police_referral(account_id: str, postcode_district: str, now: datetime) -> dict[str, Any]:
    """A flag the default policy refers to one police force (the child's, by postcode
    district): clear sextortion and grooming signals about a child in the UK, detected `now`."""
    stamp = now.isoformat()
    return flag_document(
        detected_at=stamp,
        published_at=stamp,
        signals=[signal("coercion", 0.9), signal("grooming", 0.95)],
        child={
            "age_band": "13_15",
            "location": {"country": "GB", "postcode_district": postcode_district},
        },
        subject={"account_id": account_id, "ips": ["192.0.2.1"]},
    )
