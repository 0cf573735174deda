"""The table of contents: everything in `defs/`, each stage's assets stamped with its role.

`defs/` holds one folder per stage (asset, checks, job, schedules, sensors, under literal
names) and what they share (resources, partitions, the work-sensor and check helpers). This
module loads that folder as a component tree and applies the policy every asset shares:
the stage's role (`unde_deploy.roles.STAGE_ROLES`) as its group and `unde/role` tag, which
route and throttle its runs, and the owning team.

The tree is built from the package itself (not from `pyproject.toml`, as
`dg.load_from_defs_folder` would), so an installed wheel loads the same definitions.
"""

import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from unde_dagster import defs as defs_folder
from unde_deploy.executor import role_routed_executor
from unde_deploy.roles import ROLE_TAG, STAGE_ROLES

OWNERS = ["team:data-infra"]


def roles_by_asset(tree: dg.ComponentTree) -> dict[dg.AssetKey, str]:
    """Each asset's role: the role of the stage folder that defines it."""
    roles: dict[dg.AssetKey, str] = {}
    for stage, role in STAGE_ROLES.items():
        for asset in tree.build_defs_at_path(stage).assets or []:
            for key in asset.keys:  # type: ignore[union-attr]
                if roles.setdefault(key, role) != role:
                    raise RuntimeError(f"asset {key.to_user_string()} is loaded by two stage "
                                       "folders: depend on another stage's asset by key")
    return roles


def stamp_role(roles: dict[dg.AssetKey, str]) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    def stamp(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in roles:
            raise RuntimeError(f"asset {spec.key.to_user_string()} is outside the stage "
                               "folders of STAGE_ROLES (unde_deploy/roles.py)")
        role = roles[spec.key]
        return spec.replace_attributes(
            group_name=role, tags={**spec.tags, ROLE_TAG: role}, owners=OWNERS
        )
    return stamp


def load_defs() -> dg.Definitions:
    tree = dg.ComponentTree.from_module(
        defs_module=defs_folder, project_root=Path(__file__).resolve().parent.parent
    )
    with warnings.catch_warnings():  # the folder loader is marked preview in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        loaded = tree.build_defs()
    # A module that imports an asset exposes it again: stamp each asset object once.
    assets = list({id(asset): asset for asset in loaded.assets or []}.values())
    return dg.Definitions(
        assets=dg.map_asset_specs(stamp_role(roles_by_asset(tree)), assets),
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=loaded.resources,
        # A one-role run executes in process (a subprocess per step would only add ~5 s of
        # start-up each; the collage step has its own pool); in the Docker deployment a run
        # spanning roles runs each step in a container on its role's host.
        executor=role_routed_executor,
    )


defs = load_defs()
