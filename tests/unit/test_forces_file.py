"""A deployment's own force directory (CSAE_FORCES_FILE, a ConfigMap on Kubernetes): read at
start in the bundled file's format, used for routing, or a refusal to start naming the fault."""

import json
from pathlib import Path

import pytest

from services.domain.forces import bundled_forces_text, uk_forces
from services.pipeline.settings import Settings
from services.pipeline.startup import force_directory, startup_checks


def test_unset_is_the_bundled_directory() -> None:
    assert force_directory(Settings()) is uk_forces()


def test_a_file_in_the_bundled_format_is_the_directory_every_process_uses(tmp_path: Path) -> None:
    document = json.loads(bundled_forces_text())
    kent = next(f for f in document["forces"] if f["force_id"] == "kent")
    kent["phone"] = "101 (updated)"
    document["postcode_districts"]["CV1"] = "kent"  # a boundary moved, say
    path = tmp_path / "forces.json"
    path.write_text(json.dumps(document))
    settings = Settings(forces_file=path)
    _, directory = startup_checks(settings)
    assert directory.forces["kent"].phone == "101 (updated)"
    force = directory.for_postcode_district("CV1")
    assert force is not None
    assert force.force_id == "kent"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{", "JSONDecodeError"),
        ('{"forces": []}', "KeyError"),
        (
            '{"as_of": "2026", "forces": [], "postcode_areas": {"CV": "nowhere"}, '
            '"postcode_districts": {}}',
            "unknown forces: ['nowhere']",
        ),
    ],
)
def test_a_malformed_directory_stops_the_process_naming_the_fault(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "forces.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match="CSAE_FORCES_FILE: the force directory is refused") as e:
        force_directory(Settings(forces_file=path))
    assert named in str(e.value)


def test_a_missing_file_stops_the_process(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="CSAE_FORCES_FILE: cannot read"):
        force_directory(Settings(forces_file=tmp_path / "absent.json"))
