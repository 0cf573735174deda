"""Routing table from the definitions, the production launcher/coordinator config, env rules."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.launcher import RunLauncher
from dagster._core.run_coordinator import RunCoordinator
from dagster._serdes.config_class import ConfigurableClassData

from unde_dagster.definitions import defs
from unde_deploy.entrypoint import build_env, parse_env_file
from unde_deploy.launcher import RoleRoutedDockerRunLauncher
from unde_deploy.roles import (
    ROLES,
    HostEngine,
    Routing,
    RoutingError,
    concurrency_limits,
    role_of,
    run_role_tags,
)
from unde_deploy.runs import asset_roles, roles_of_keys

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The role hosts of the seeds (private IPs), the one fixed table of this deployment.
ROLE_IPS = {
    "apify": "10.1.0.9",
    "downloader": "10.1.0.10",
    "collage": "10.1.0.16",
    "ximilar": "10.1.0.11",
    "scraper": "10.1.0.3",
    "generator": "10.1.0.5",
}


def _env_example() -> dict[str, str]:
    return parse_env_file((DEPLOY / "control-plane" / ".env.example").read_text())


def _rehydrate(section: str, base: type, monkeypatch: pytest.MonkeyPatch) -> object:
    for key, value in _env_example().items():
        monkeypatch.setenv(key, value)
    for key in ("UNDE_DOCKER_TLS_CA", "UNDE_DOCKER_TLS_CERT", "UNDE_DOCKER_TLS_KEY"):
        monkeypatch.setenv(key, f"/etc/dagster/docker-tls/{key.lower()}.pem")
    monkeypatch.setenv("UNDE_RUN_IMAGE", _env_example()["UNDE_USER_CODE_IMAGE"])
    cfg = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())[section]
    data = ConfigurableClassData(cfg["module"], cfg["class"], yaml.safe_dump(cfg["config"]))
    return data.rehydrate(base)


@pytest.fixture()
def launcher(monkeypatch: pytest.MonkeyPatch) -> RoleRoutedDockerRunLauncher:
    made = _rehydrate("run_launcher", RunLauncher, monkeypatch)
    assert isinstance(made, RoleRoutedDockerRunLauncher)
    return made


def test_every_asset_has_a_role_and_an_engine(launcher: RoleRoutedDockerRunLauncher) -> None:
    table = asset_roles(defs.resolve_asset_graph())
    assert table, "no assets in definitions"
    for key, role in table.items():
        assert role in ROLES, f"{key.to_user_string()} has no role"
        engine = launcher.routing.engine_for_role(role)
        assert engine.url == f"tcp://{ROLE_IPS[role]}:2376", key.to_user_string()


def test_every_asset_declares_group_and_tag() -> None:
    for node in defs.resolve_asset_graph().asset_nodes:
        assert node.group_name in ROLES, node.key.to_user_string()
        assert node.tags.get("unde/role") == node.group_name, node.key.to_user_string()


def test_stage_assets_route_to_their_hosts(launcher: RoleRoutedDockerRunLauncher) -> None:
    table = asset_roles(defs.resolve_asset_graph())
    expected = {"product_collages": "collage", "ximilar_index": "ximilar-sync"}
    for asset, host in expected.items():
        roles = roles_of_keys([dg.AssetKey(asset)], table, asset)
        assert launcher.routing.engine_for_roles(roles, asset).name == host


def test_production_queue_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator = _rehydrate("run_coordinator", RunCoordinator, monkeypatch)
    limits = coordinator.get_run_queue_config().tag_concurrency_limits  # type: ignore[attr-defined]
    want = concurrency_limits({"downloader": 2, "collage": 2, "ximilar": 1, "generator": 1})
    assert sorted(map(str, limits)) == sorted(map(str, want))


def test_role_of_rejects_disagreement_and_unknown_roles() -> None:
    assert role_of("a", "collage", {"unde/role": "collage"}) == "collage"
    assert role_of("a", "collage", {}) == "collage"
    assert role_of("a", "default", {}) is None
    with pytest.raises(RoutingError, match="disagrees"):
        role_of("a", "collage", {"unde/role": "ximilar"})
    with pytest.raises(RoutingError, match="not one of"):
        role_of("a", None, {"unde/role": "gpu"})
    with pytest.raises(RoutingError, match="has no role"):
        roles_of_keys([dg.AssetKey("x")], {dg.AssetKey("x"): None}, "run 1")


def test_run_tags_single_and_multi_role() -> None:
    single = run_role_tags(["collage"], {"dagster/partition": "zara"})
    assert single == {
        "unde/role": "collage",
        "unde/roles": "collage",
        "unde/uses_collage": "true",
        "unde/brand_collage": "zara",
        "unde/brand": "zara",
        "unde/stage": "collages",
        "unde/trigger": "manual",
    }
    multi = run_role_tags(["ximilar", "apify"], {})
    assert multi["unde/role"] == "multi"
    assert multi["unde/roles"] == "apify,ximilar"
    assert multi["unde/stage"] == "catalog,ximilar"
    assert not any(k.startswith("unde/brand") for k in multi)


def test_plain_run_tags_say_what_launched_the_run_and_keep_a_jobs_own() -> None:
    def tags(**run_tags: str) -> dict[str, str]:
        return run_role_tags(["downloader"], {"dagster/partition": "zara", **run_tags})
    assert tags(**{"dagster/backfill": "b1"})["unde/trigger"] == "backfill"
    assert tags(**{"dagster/schedule_name": "downloader_retry_hourly"})["unde/trigger"] == (
        "schedule downloader_retry_hourly")
    assert tags(**{"dagster/sensor_name": "s"})["unde/trigger"] == "sensor s"
    assert tags(**{"dagster/parent_run_id": "r"})["unde/trigger"] == "re-execution"
    assert "unde/trigger" not in tags(**{"unde/trigger": "demo"})  # the run's own is kept
    assert "unde/stage" not in tags(**{"unde/stage": "originals"})


def test_multi_role_runs_need_a_declared_host() -> None:
    engines = {"a": HostEngine("a", "tcp://10.0.0.1:2376"), "b": HostEngine("b", "tcp://b")}
    hosts = dict.fromkeys(ROLES, "a") | {"collage": "b"}
    with pytest.raises(RoutingError, match="no orchestrator_host"):
        Routing(hosts, engines).engine_for_roles(["apify", "collage"], "run 1")
    assert Routing(hosts, engines, "b").engine_for_roles(["apify", "collage"], "r").name == "b"
    with pytest.raises(RoutingError, match="no host for roles"):
        Routing({"apify": "a"}, engines)


def test_launcher_refuses_env_values_and_plain_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "role_hosts": dict.fromkeys(ROLES, "h"),
        "hosts": {"h": {"url": "tcp://10.1.0.16:2376"}},
        "tls": {"ca_cert": "ca", "client_cert": "c", "client_key": "k"},
    }
    with pytest.raises(RoutingError, match="carries a value"):
        RoleRoutedDockerRunLauncher(env_vars=["XIMILAR_TOKEN=secret"], **cfg)
    with pytest.raises(RoutingError, match="needs TLS"):
        RoleRoutedDockerRunLauncher(**{**cfg, "tls": None})


def test_entrypoint_loads_env_file_and_names_missing(tmp_path: Path) -> None:
    env_file = tmp_path / "run.env"
    env_file.write_text("# c\nSTAGING_DB_URL=postgresql://u:p@h/db\nEMPTY=\nQ='kept'\n")
    env = build_env({"UNDE_ENV_FILE": str(env_file), "UNDE_REQUIRED_ENV": "STAGING_DB_URL"})
    assert env["STAGING_DB_URL"] == "postgresql://u:p@h/db"
    assert env["Q"] == "'kept'"
    with pytest.raises(SystemExit, match=r"lacks \['FAL_KEY'\]") as err:
        build_env({"UNDE_ENV_FILE": str(env_file), "UNDE_REQUIRED_ENV": "FAL_KEY,STAGING_DB_URL"})
    assert "postgresql://" not in str(err.value)


def test_a_run_spanning_roles_gets_placeholders_not_other_hosts_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "run.env"
    env_file.write_text("STAGING_DB_URL=postgresql://collage@db/staging\nS3_SECRET_KEY=s3cret\n")
    base = {"UNDE_ENV_FILE": str(env_file)}
    assert "APIFY_TOKEN" not in build_env(base)  # one-role run: nothing added
    env = build_env({**base, "UNDE_SPANS_ROLES": "1"})
    assert env["STAGING_DB_URL"] == "postgresql://collage@db/staging"
    assert env["S3_SECRET_KEY"] == "s3cret"
    assert env["APIFY_TOKEN"] == "unset-on-this-host:APIFY_TOKEN"
    assert env["XIMILAR_TOKEN"] == "unset-on-this-host:XIMILAR_TOKEN"
