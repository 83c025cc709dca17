"""What the router and the worker check before they start: the reporting policy and the force
directory, or a refusal to start that names what is wrong."""

from services.domain.forces import ForceDirectory, read_forces, uk_forces
from services.domain.organisations import (
    DirectoryError,
    Organisation,
    Organisations,
    read_directory,
)
from services.domain.policy import Policy, PolicyError, load_policy
from services.pipeline.settings import Settings


def startup_checks(settings: Settings) -> tuple[Policy, ForceDirectory]:
    """The policy (CSAE_POLICY_FILE, else the bundled one) and force directory, or a refusal
    to start that names what is wrong."""
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        raise SystemExit(f"CSAE_POLICY_FILE: the reporting policy is refused:\n{exc}") from None
    directory = force_directory(settings)
    if settings.home_force_id not in directory.forces:
        raise SystemExit(
            f"CSAE_HOME_FORCE_ID={settings.home_force_id!r} is not a force id; "
            f"one of: {', '.join(sorted(directory.forces))}"
        )
    return policy, directory


def force_directory(settings: Settings) -> ForceDirectory:
    """The force directory (CSAE_FORCES_FILE, else the bundled one), or a refusal to start."""
    path = settings.forces_file
    if path is None:
        return uk_forces()
    try:
        return read_forces(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"CSAE_FORCES_FILE: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise SystemExit(f"CSAE_FORCES_FILE: the force directory is refused: {exc}") from None


def organisations(settings: Settings) -> Organisations:
    """The reporting organisations (CSAE_ORG_DIRECTORY_FILE), else the one configured by
    CSAE_ORG_NAME and its contact for every flag; a refusal to start naming what is wrong."""
    path = settings.org_directory_file
    if path is None:
        try:
            return Organisations.only(
                Organisation(
                    org_id="configured",
                    name=settings.org_name,
                    safeguarding_contact=settings.safeguarding_contact,
                    safeguarding_email=settings.safeguarding_email,
                    country=settings.org_country,
                )
            )
        except ValueError as exc:
            raise SystemExit(f"CSAE_ORG_NAME and its contact are refused: {exc}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"CSAE_ORG_DIRECTORY_FILE: cannot read {path}: {exc}") from None
    try:
        return read_directory(text, source=str(path), single=settings.single_organisation)
    except DirectoryError as exc:
        raise SystemExit(f"CSAE_ORG_DIRECTORY_FILE: the directory is refused: {exc}") from None
