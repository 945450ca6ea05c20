"""The roles an identity can hold: people's and the tiers' service identities."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ROLES", "RoleError", "check_roles"]

ROLES: dict[str, str] = {
    "admin": "registers identities, grants and revokes roles",
    "deployer": "requests deploys of a release to production",
    "qa": "signs off a release after checking it on staging",
    "security": "signs guardrail policies (security and scaling rules)",
    "compliance": "signs off audit archives; reads the audit log over the API",
    "service-audit": "the audit service: signs the logs' checkpoints and archives",
    "service-api": "an API tier process",
    "service-worker": "a background worker process",
    "service-edge": "an edge cache process",
    "service-pipeline": "the release pipeline: signs cutover grants and deploy archives",
}


class RoleError(ValueError):
    pass


def check_roles(roles: Iterable[str]) -> set[str]:
    roles = set(roles)
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise RoleError(f"unknown role {', '.join(unknown)}; roles are: {', '.join(ROLES)}")
    return roles
