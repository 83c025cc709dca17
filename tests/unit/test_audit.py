"""The audit chain with no database: each entry hashed with its predecessor, and `verify` names
the first entry altered, removed or reordered."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.referral import audit
from services.referral.audit import GENESIS, Entry, ExportedEntry, canonical, chain_hash, verify

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def chain(n: int) -> list[ExportedEntry]:
    """`n` entries chained as `audit.record` chains them."""
    entries, previous = [], GENESIS
    for seq in range(1, n + 1):
        entry = Entry(
            actor="investigator:abc123",
            action="case.read",
            outcome="200",
            route="GET /v1/cases/{case_id}",
            case_id=uuid4(),
            detail={"rows": seq},
        )
        at = T0 + timedelta(seconds=seq)
        digest = chain_hash(previous, canonical(seq, at, entry))
        entries.append(
            ExportedEntry(
                seq=seq,
                at=at,
                actor=entry.actor,
                action=entry.action,
                route=entry.route,
                request_id=None,
                case_id=entry.case_id,
                packet_version=None,
                flag_id=None,
                detail=dict(entry.detail),
                outcome=entry.outcome,
                prev_hash=previous,
                hash=digest,
            )
        )
        previous = digest
    return entries


def first_bad(entries: list[ExportedEntry]) -> tuple[int, str]:
    broken = verify(entries).broken
    assert broken is not None
    return broken.seq, broken.reason


def test_an_intact_chain_verifies_to_its_head() -> None:
    entries = chain(5)
    done = verify(entries)
    assert done.broken is None
    assert (done.entries, done.head_seq, done.head_hash) == (5, 5, entries[-1].hash)


def test_an_altered_field_is_named() -> None:
    entries = chain(5)
    entries[2] = dataclasses.replace(entries[2], actor="admin:someone")
    seq, reason = first_bad(entries)
    assert seq == 3
    assert "altered" in reason


def test_an_altered_entry_rehashed_breaks_the_next_link() -> None:
    entries = chain(5)
    forged = dataclasses.replace(entries[2], outcome="404")
    forged = dataclasses.replace(
        forged, hash=chain_hash(forged.prev_hash, canonical(3, forged.at, forged))
    )
    entries[2] = forged
    assert first_bad(entries)[0] == 4


def test_a_removed_entry_is_named() -> None:
    entries = chain(5)
    del entries[1]
    seq, reason = first_bad(entries)
    assert seq == 2
    assert "removed" in reason


def test_a_removed_entry_renumbered_breaks_the_link() -> None:
    entries = chain(5)
    del entries[1]
    entries = [dataclasses.replace(e, seq=i) for i, e in enumerate(entries, start=1)]
    assert first_bad(entries)[0] == 2


def test_two_swapped_entries_are_named_at_the_first() -> None:
    entries = chain(5)
    a, b = entries[1], entries[3]
    entries[1] = dataclasses.replace(b, seq=2)
    entries[3] = dataclasses.replace(a, seq=4)
    assert first_bad(entries)[0] == 2


def test_an_export_line_reads_back_to_the_same_entry() -> None:
    for entry in chain(3):
        line = json.dumps(audit.exported(entry))
        assert ExportedEntry.from_json(line) == entry


def test_the_canonical_json_is_the_same_in_any_timezone() -> None:
    entry = Entry(actor="system", action="case.transition", outcome="ok")
    later = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert canonical(1, T0, entry) == canonical(1, later, entry)


def test_the_json_sent_to_the_database_ends_where_its_number_goes() -> None:
    # The database appends the number it assigns: the hash must be the one verify recomputes.
    entry = Entry(
        actor="investigator:abc", action="cases.list", outcome="200", detail={"zeta": "é", "a": 1}
    )
    for seq in (1, 9, 10, 123_456_789_012):
        assert (audit.unnumbered(T0, entry) + f"{seq}}}").encode() == canonical(seq, T0, entry)
