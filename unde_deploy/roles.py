"""Roles, role hosts and the run tags that route and throttle runs (no Dagster import).

Why a separate module: the routing rule (asset → role → host → Docker engine) is the
contract between the asset authors and the deployment; keeping it pure makes it testable
from the definitions and from a remote (gRPC) asset graph alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ROLES: tuple[str, ...] = ("apify", "downloader", "collage", "ximilar", "scraper", "generator")
STAGE_ROLES: Mapping[str, str] = {
    "catalog": "apify",
    "originals": "downloader",
    "collages": "collage",
    "ximilar": "ximilar",
    "availability": "scraper",
    "production": "scraper",
    "model_library": "generator",
}
"""Which role runs each stage (a folder of `unde_dagster/defs/`): declared here once, stamped
onto its assets' group and `unde/role` tag by `unde_dagster.definitions`."""
ROLE_TAG = "unde/role"
"""On assets: the role that runs them. On runs: the single role, or MULTI_ROLE."""
ROLES_TAG = "unde/roles"
HOST_TAG = "unde/docker_host"
ENGINE_TAG = "unde/docker_engine"
MULTI_ROLE = "multi"
SPANS_ROLES_ENV = "UNDE_SPANS_ROLES"
"""Set (=1) in the containers of a run spanning roles: see unde_deploy/entrypoint.py."""
BRAND_TAG = "unde/brand"
STAGE_TAG = "unde/stage"
TRIGGER_TAG = "unde/trigger"
SKUS_TAG = "unde/skus"
"""Plain run tags for the runs list: the brand, the stage(s), what launched the run (schedule,
sensor, backfill, re-execution, manual) and, once it ran, how many SKUs it handled."""
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def uses_tag(role: str) -> str:
    """Run tag present on every run doing `role` work: the per-role concurrency key."""
    return f"unde/uses_{role}"


def brand_tag(role: str) -> str:
    """Run tag holding the brand a run processes for `role`: limited to one run per value."""
    return f"unde/brand_{role}"


def stage_job_tags(role: str) -> dict[str, str]:
    """Tags of a one-role job: its role and the role's concurrency key."""
    return {ROLE_TAG: role, uses_tag(role): "true"}


def stage_run_tags(role: str, brand: str) -> dict[str, str]:
    """Tags of one brand's run of a one-role job (the coordinator adds the same at submit)."""
    return {**stage_job_tags(role), brand_tag(role): brand}


class RoutingError(Exception):
    """A run cannot be routed; the message says what to change."""


def role_of(key: str, group_name: str | None, tags: Mapping[str, str]) -> str | None:
    """The role of one asset: its `unde/role` tag, which must agree with its group."""
    tagged = tags.get(ROLE_TAG)
    grouped = group_name if group_name in ROLES else None
    if tagged is not None and tagged not in ROLES:
        raise RoutingError(f"asset {key}: tag {ROLE_TAG}={tagged!r} is not one of {ROLES}")
    if tagged and grouped and tagged != grouped:
        raise RoutingError(
            f"asset {key}: tag {ROLE_TAG}={tagged!r} disagrees with group {group_name!r}"
        )
    return tagged or grouped


@dataclass(frozen=True)
class HostEngine:
    """One role host's Docker engine: the URL the control plane dials (TLS only in prod)."""

    name: str
    url: str


@dataclass(frozen=True)
class Routing:
    """Role → host → engine, plus where the run worker of a run spanning several roles goes
    (`orchestrator_host`, the control plane's engine; its steps go to their roles' engines;
    None rejects such runs)."""

    role_hosts: Mapping[str, str]
    engines: Mapping[str, HostEngine]
    orchestrator_host: str | None = None
    unknown: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        missing = [r for r in ROLES if r not in self.role_hosts]
        if missing:
            raise RoutingError(f"role_hosts has no host for roles {missing}")
        for role, host in self.role_hosts.items():
            if role not in ROLES:
                raise RoutingError(f"role_hosts: unknown role {role!r}")
            if host not in self.engines:
                raise RoutingError(f"role {role!r} points at host {host!r}, not in hosts")
        if self.orchestrator_host is not None and self.orchestrator_host not in self.engines:
            raise RoutingError(f"orchestrator_host {self.orchestrator_host!r} is not in hosts")

    def engine_for_role(self, role: str) -> HostEngine:
        return self.engines[self.role_hosts[role]]

    def engine_for_roles(self, roles: Iterable[str], what: str) -> HostEngine:
        """The engine for a run doing `roles` (`what` names the run in errors)."""
        wanted = sorted(set(roles))
        if len(wanted) == 1:
            return self.engine_for_role(wanted[0])
        if self.orchestrator_host is None:
            raise RoutingError(
                f"{what} spans roles {wanted or 'none'}; this deployment has no "
                "orchestrator_host for its run worker, so materialize one role's assets per "
                "run (e.g. select one asset group)."
            )
        return self.engines[self.orchestrator_host]


def run_role_tags(roles: Iterable[str], run_tags: Mapping[str, str]) -> dict[str, str]:
    """Tags that route and throttle a run doing `roles`, derived from its asset roles.

    `unde/uses_<role>` counts the run against each role's concurrency limit and
    `unde/brand_<role>` (the partition, i.e. the brand) allows one run per brand per stage,
    also when a multi-role pipeline run covers that stage.
    """
    wanted = sorted(set(roles))
    tags = {
        ROLE_TAG: wanted[0] if len(wanted) == 1 else MULTI_ROLE,
        ROLES_TAG: ",".join(wanted),
    }
    brand = run_tags.get(PARTITION_TAG)
    if brand is None and RANGE_START_TAG in run_tags:
        brand = f"{run_tags[RANGE_START_TAG]}...{run_tags.get(RANGE_END_TAG, '')}"
    for role in wanted:
        tags[uses_tag(role)] = "true"
        if brand:
            tags[brand_tag(role)] = brand
    if brand:
        tags[BRAND_TAG] = brand
    if STAGE_TAG not in run_tags:
        tags[STAGE_TAG] = ",".join(s for s, r in STAGE_ROLES.items() if r in wanted)
    if TRIGGER_TAG not in run_tags:
        tags[TRIGGER_TAG] = trigger_of(run_tags)
    return tags


def trigger_of(run_tags: Mapping[str, str]) -> str:
    """What launched a run, from the tags Dagster itself sets."""
    if "dagster/backfill" in run_tags:
        return "backfill"
    if "dagster/schedule_name" in run_tags:
        return f"schedule {run_tags['dagster/schedule_name']}"
    if "dagster/sensor_name" in run_tags:
        return f"sensor {run_tags['dagster/sensor_name']}"
    if "dagster/parent_run_id" in run_tags:
        return "re-execution"
    return "manual"


def concurrency_limits(per_role: Mapping[str, int]) -> list[dict[str, object]]:
    """The `tag_concurrency_limits` block: per-role limits and one run per brand per role."""
    limits: list[dict[str, object]] = [
        {"key": uses_tag(role), "value": "true", "limit": limit}
        for role, limit in per_role.items()
    ]
    limits += [
        {"key": brand_tag(role), "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        for role in ROLES
    ]
    return limits
