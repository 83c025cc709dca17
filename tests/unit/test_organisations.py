"""The directory of reporting organisations: who sends each packet, refused at start when
malformed, and a flag from an unlisted organisation refused with a clear reason."""

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from schemas.referral import RejectionReason
from services.domain.forces import uk_forces
from services.domain.organisations import DirectoryError, read_directory
from services.domain.policy import default_policy
from services.pipeline.decode import Refusal
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.pipeline.startup import organisations
from services.referral.packets import Reporter
from services.referral.store import CaseConfig
from services.router import service
from services.router.routing import Routing
from tests.factories import DETECTED_AT, flag_document
from tests.unit.test_router_edge import record

DIRECTORY = """
organisations:
  - org_id: example-chat
    name: Example Chat Ltd
    safeguarding_contact: Designated Safeguarding Lead, +44 20 0000 0001
    country: GB
  - org_id: example-video-us
    name: Example Video Inc
    safeguarding_contact: Trust and Safety on call, +1 202 555 0100
    safeguarding_email: safety@example.invalid
    country: US
    reports_to: [intl]
"""


def test_each_organisation_sends_its_own_packets() -> None:
    listed = read_directory(DIRECTORY, source="test")
    config = CaseConfig(
        reporter=Reporter("Fallback Ltd", "nobody"), directory=uk_forces(), organisations=listed
    )
    assert config.reporter_for("example-video-us") == Reporter(
        "Example Video Inc", "Trust and Safety on call, +1 202 555 0100", "safety@example.invalid"
    )
    assert config.reporter_for("example-chat").name == "Example Chat Ltd"
    assert listed.find("not-listed") is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("organisations: []", "organisations"),
        (DIRECTORY.replace("country: US", "country: usa"), "organisations.1.country"),
        (DIRECTORY.replace("    name: Example Chat Ltd\n", ""), "organisations.0.name"),
        (DIRECTORY.replace("example-video-us", "example-chat"), "listed twice"),
        (DIRECTORY.replace("[intl]", "[carrier-pigeon]"), "organisations.1.reports_to.0"),
        (DIRECTORY + "    surprise: 1\n", "organisations.1.surprise"),
        (DIRECTORY.replace("Example Chat Ltd", '"Example\\x07Chat"'), "organisations.0.name"),
        ("organisations: [", "not YAML"),
    ],
)
def test_a_malformed_directory_is_refused_naming_the_entry_and_field(text: str, named: str) -> None:
    with pytest.raises(DirectoryError, match=named.replace(".", r"\.")):
        read_directory(text, source="dir.yaml")


def test_a_single_organisation_deployment_uses_its_one_entry_for_every_flag() -> None:
    one = DIRECTORY.split("  - org_id: example-video-us")[0]
    listed = read_directory(one, source="test", single=True)
    assert listed.find("whatever-the-flag-says") is not None
    with pytest.raises(DirectoryError, match="exactly one"):
        read_directory(DIRECTORY, source="test", single=True)


def test_a_process_refuses_to_start_on_a_malformed_directory(tmp_path: Path) -> None:
    path = tmp_path / "organisations.yaml"
    path.write_text(DIRECTORY.replace("country: GB", "country: 12"), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"CSAE_ORG_DIRECTORY_FILE.*organisations\.0\.country"):
        organisations(Settings(org_directory_file=path))
    with pytest.raises(SystemExit, match="cannot read"):
        organisations(Settings(org_directory_file=tmp_path / "missing.yaml"))


def test_without_a_directory_the_configured_organisation_sends_every_packet() -> None:
    listed = organisations(Settings(org_name="Configured Ltd"))
    entry = listed.find("any-org")
    assert entry is not None
    assert entry.name == "Configured Ltd"


def router(tmp_path: Path, directory: str | None = None) -> service.FlagRouter:
    """The router with a directory file: `directory` (YAML), else one GB organisation."""
    path = tmp_path / "organisations.json"
    path.write_text(
        directory
        or json.dumps(
            {
                "organisations": [
                    {
                        "org_id": "org-test",
                        "name": "Test Org",
                        "safeguarding_contact": "DSL",
                        "country": "GB",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    settings = Settings(org_directory_file=path)
    return service.FlagRouter(
        None,
        settings=settings,
        metrics=Metrics(CollectorRegistry()),
        policy=default_policy(),
        directory=uk_forces(),
        organisations=organisations(settings),
    )


def test_a_flag_from_an_unlisted_organisation_is_refused_with_a_clear_reason(
    tmp_path: Path,
) -> None:
    listed = router(tmp_path)
    assert isinstance(
        listed._route(record(json.dumps(flag_document()).encode()), DETECTED_AT), Routing
    )
    stranger = flag_document(
        platform={"org_id": "org-marker-stranger", "service": "chat", "country": "GB"}
    )
    result = listed._route(record(json.dumps(stranger).encode()), DETECTED_AT)
    assert isinstance(result, Refusal)
    assert result.reason is RejectionReason.UNKNOWN_ORGANISATION
    assert str(result.flag_id) == stranger["flag_id"]
    assert "marker" not in repr(result), "the refusal names no value of the flag"


REGULATED = """
organisations:
  - org_id: example-video-us
    name: Example Video Inc
    safeguarding_contact: Trust and Safety on call, +1 202 555 0100
    country: US
    reports_to: [intl, nca]
  - org_id: example-forum-us
    name: Example Forum Inc
    safeguarding_contact: Safety desk, +1 202 555 0101
    country: US
    reports_to: [intl]
"""


@pytest.mark.parametrize(
    ("org_id", "child_country", "kinds"),
    [
        ("example-video-us", "GB", ["intl", "nca"]),  # regulated, UK-linked
        ("example-video-us", "US", ["intl"]),  # regulated, no UK link
        ("example-forum-us", "GB", ["intl"]),  # not listed as a regulated service
    ],
)
def test_the_router_sends_to_the_nca_as_the_directory_says(
    tmp_path: Path, org_id: str, child_country: str, kinds: list[str]
) -> None:
    handler = router(tmp_path, REGULATED)
    document = flag_document(
        platform={"org_id": org_id, "service": "video", "country": "US"},
        signals=[{"category": "coercion", "label": "sextortion", "confidence": 0.95}],
        child={"age_band": "13_15", "location": {"country": child_country}},
    )
    routed = handler._route(record(json.dumps(document).encode()), DETECTED_AT)
    assert isinstance(routed, Routing)
    assert [task.destination.kind.value for task in routed.tasks] == kinds
