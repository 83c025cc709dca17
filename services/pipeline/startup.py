"""What the router and the worker check before they start: the reporting policy and the force
directory, or a refusal to start that names what is wrong."""

from services.domain.forces import ForceDirectory, uk_forces
from services.domain.policy import Policy, PolicyError, load_policy
from services.pipeline.settings import Settings


def startup_checks(settings: Settings) -> tuple[Policy, ForceDirectory]:
    """The policy (CSAE_POLICY_FILE, else the bundled one) and force directory, or a refusal
    to start that names what is wrong."""
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        raise SystemExit(f"CSAE_POLICY_FILE: the reporting policy is refused:\n{exc}") from None
    directory = uk_forces()
    if settings.home_force_id not in directory.forces:
        raise SystemExit(
            f"CSAE_HOME_FORCE_ID={settings.home_force_id!r} is not a force id; "
            f"one of: {', '.join(sorted(directory.forces))}"
        )
    return policy, directory
