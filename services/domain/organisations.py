"""The reporting organisations: who sends each packet, by the flag's `platform.org_id`. Pure.

A deployment serving several organisations (a group of platforms, a trust-and-safety vendor)
lists each in a directory file (`CSAE_ORG_DIRECTORY_FILE`, YAML or JSON):

    organisations:
      - org_id: example-chat
        name: Example Chat Ltd
        safeguarding_contact: Designated Safeguarding Lead, +44 20 0000 0000
        safeguarding_email: safeguarding@example.invalid
        country: GB
        reports_to: [police, iwf]

A malformed directory stops the router, the worker and the API at start, naming the entry and
the field. A flag from an organisation the directory does not list is refused to the dead
letter (`unknown_organisation`): a packet sent in another organisation's name would be wrong,
and its safeguarding contact would not answer for it. A single-organisation deployment
(`CSAE_SINGLE_ORGANISATION=true`, with exactly one entry) uses its one entry for every flag.
Without a directory file, the one organisation is the one configured by `CSAE_ORG_NAME`,
`CSAE_SAFEGUARDING_CONTACT` and `CSAE_SAFEGUARDING_EMAIL`, for every flag (as before).

`reports_to` says which kinds of destination the organisation reports to. `nca` in it marks a
regulated service under the Online Safety Act 2023: its CSEA content goes to the NCA too (all of
it for an organisation in the UK, the UK-linked content otherwise; `services.domain.nca`):

      - org_id: example-video
        name: Example Video Inc
        safeguarding_contact: Trust and Safety desk, +1 202 000 0000
        country: US
        reports_to: [intl, nca]

The other kinds are recorded, not yet used to route: police, IWF and abroad destinations follow
from the flag (`services.domain.destinations`).
"""

from dataclasses import dataclass
from typing import Annotated, Self

import yaml
from pydantic import Field, StringConstraints, ValidationError, model_validator

from schemas.base import PRINTABLE, Contract, CountryCode, Identifier
from schemas.referral import DestinationKind

Printed = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=f"^{PRINTABLE}+$")]
"""Printed on every packet, so bounded as packets are."""


class DirectoryError(ValueError):
    """The directory file is malformed: the message names the entry and the field."""


class Organisation(Contract):
    org_id: Identifier
    name: Printed
    safeguarding_contact: Printed
    """Who the police or the IWF call back: a person or desk that answers for this org."""
    safeguarding_email: Printed | None = None
    country: CountryCode
    reports_to: list[DestinationKind] = Field(
        default_factory=lambda: [DestinationKind.POLICE, DestinationKind.IWF], min_length=1
    )


class DirectoryDocument(Contract):
    organisations: list[Organisation] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        for entry in self.organisations:
            if entry.org_id in seen:
                raise ValueError(f"org_id {entry.org_id!r} is listed twice")
            seen.add(entry.org_id)
        return self


@dataclass(frozen=True, slots=True)
class Organisations:
    """The directory: each organisation by id, or one for every flag (`single`)."""

    by_id: dict[str, Organisation]
    single: Organisation | None = None

    def find(self, org_id: str) -> Organisation | None:
        """The organisation a flag's `platform.org_id` names; None when it is not listed."""
        return self.single or self.by_id.get(org_id)

    @classmethod
    def only(cls, organisation: Organisation) -> "Organisations":
        return cls({organisation.org_id: organisation}, organisation)


def read_directory(text: str, *, source: str, single: bool = False) -> Organisations:
    """The directory in `text` (YAML or JSON); raises `DirectoryError` naming what is wrong."""
    try:
        document = DirectoryDocument.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{source}: not YAML or JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)[:10]
        )
        raise DirectoryError(f"{source}: {problems}") from None
    entries = {entry.org_id: entry for entry in document.organisations}
    if not single:
        return Organisations(entries)
    if len(entries) != 1:
        raise DirectoryError(
            f"{source}: a single-organisation deployment lists exactly one organisation; "
            f"this one lists {len(entries)}"
        )
    return Organisations.only(document.organisations[0])
