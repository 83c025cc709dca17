"""The directory of UK police forces and the postcode areas they police, loaded from data."""

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_AREA = re.compile(r"^[A-Z]{1,2}")


@dataclass(frozen=True, slots=True)
class Force:
    force_id: str
    name: str
    phone: str
    website: str
    nation: str
    source: str
    """Where the entry comes from (data.police.uk's record of the force, else its own website)."""


@dataclass(frozen=True, slots=True)
class ForceDirectory:
    as_of: str
    """When the directory was written from its sources (`sources` in the data file)."""
    forces: dict[str, Force]
    postcode_areas: dict[str, str]
    postcode_districts: dict[str, str]
    """Districts that lie in another force than most of their area (`CV1` → west-midlands)."""

    def for_postcode_district(self, district: str) -> Force | None:
        """The force for a postcode district: its own entry, else its area's (`SW1A` → `SW`)."""
        district = district.upper()
        area = _AREA.match(district)
        force_id = self.postcode_districts.get(district) or (
            self.postcode_areas.get(area.group()) if area else None
        )
        return self.forces.get(force_id) if force_id else None


@cache
def uk_forces() -> ForceDirectory:
    """The bundled directory (`data/uk_police_forces.json`)."""
    return read_forces(bundled_forces_text())


def bundled_forces_text() -> str:
    return resources.files("services.domain").joinpath("data/uk_police_forces.json").read_text()


def read_forces(text: str) -> ForceDirectory:
    """A directory in the bundled file's format; ValueError naming what is wrong otherwise."""
    try:
        document = json.loads(text)
        forces = {f["force_id"]: Force(**f) for f in document["forces"]}
        areas: dict[str, str] = dict(document["postcode_areas"])
        districts: dict[str, str] = dict(document["postcode_districts"])
        as_of = str(document["as_of"])
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"not a force directory: {type(exc).__name__}: {exc}") from None
    unknown = sorted({*areas.values(), *districts.values()} - forces.keys())
    if unknown:
        raise ValueError(f"postcodes map to unknown forces: {unknown}")
    return ForceDirectory(as_of, forces, areas, districts)
