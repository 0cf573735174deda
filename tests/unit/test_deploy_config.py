"""deploy/ as an operator runs it: every host's env example resolves what its processes use.

Each process of the deployment is checked with exactly the variables its host gives it
(everything else the project reads is cleared first):

- a run container on a role host: `deploy/role-hosts/<host>.run.env.example` (what the image
  entrypoint loads from `/etc/unde/run.env`);
- the code server: `code-server.env.example` plus the `environment:` compose.yaml sets on it;
- the daemon and webserver: compose.yaml's `environment:` interpolated from `.env.example`.

For a host, "what it uses" is every process the production routing puts there, for each
named job, each asset materialized alone from the UI (with its checks), each role's assets
together and "Materialize all": the run worker of a one-role run (its steps in process);
for a run spanning roles, its run worker on the launcher's host for it and, when the
executor delegates steps, each step's container on its role's host. Run worker and step
worker alike plan the run's whole job, so each must pass Dagster's run-config resolution
(every `dg.EnvVar` of the run's resources set); the run worker must build the job's
executor from the instance (`deploy/dagster.yaml`, read through an `InstanceRef`); the
resources of the steps a host executes must pass their pydantic validation
(`process_config_and_initialize()`; no resource of this project connects at init); and the
instance's storage config must resolve. For the code server, each schedule's and sensor's
resources are built the way a tick builds them (`dg.build_resources`).

The requirement files of the two images are checked against `setup.py` and what the
control-plane image runs, read with `packaging` for the images' platform (linux x86_64).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata as metadata
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import RunLauncher
from dagster._core.run_coordinator import RunCoordinator
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._serdes.config_class import ConfigurableClassData
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from unde_dagster.definitions import load_defs
from unde_deploy.entrypoint import build_env, parse_env_file
from unde_deploy.launcher import RoleRoutedDockerRunLauncher
from unde_deploy.roles import SPANS_ROLES_ENV, RoutingError
from unde_deploy.runs import asset_roles

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONTROL = DEPLOY / "control-plane"
ROLE_HOSTS = DEPLOY / "role-hosts"
DOCKER = DEPLOY / "docker"

# The proxy: port 44445 and its own CA (EXTERNAL_APIS §4: the 22225/33335 certificates
# expired 2026-09-25). The role host keeps the CA in PROXY_CA_HOST_DIR; the launcher mounts
# that folder read-only at PROXY_CA_DIR in run containers (deploy/README.md).
PROXY_PORT = 44445
EXPIRED_PROXY_PORTS = (22225, 33335)
PROXY_CA_HOST_DIR = "/etc/unde/proxy-ca"
PROXY_CA_DIR = "/run/unde/proxy-ca"
PROXY_CA_BUNDLE = f"{PROXY_CA_DIR}/brightdata_root_ca_{PROXY_PORT}.crt"
WEBHOOK = "ALERT_WEBHOOK_URL"
MISSING_ENV = re.compile(r'environment variable "(\w+)" which is not set')
# A string literal that names a variable the project reads (EnvVar, os.environ, tuning maps).
ENV_LITERAL = re.compile(r"""["']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)["']""")
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


# --- env files ------------------------------------------------------------------------------


def read_env(path: Path) -> dict[str, str]:
    """An env file as Docker's `env_file`/the image entrypoint read it."""
    return parse_env_file(path.read_text(encoding="utf-8"))


def launcher_config() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]


def role_host_names() -> list[str]:
    """Every host of the launcher's config (role hosts and any host for multi-role runs)."""
    return sorted(launcher_config()["hosts"])


def role_host_env(host: str) -> dict[str, str]:
    return read_env(ROLE_HOSTS / f"{host}.run.env.example")


def compose_env(service: str) -> dict[str, str]:
    """The environment compose gives `service`: its env_file examples, then `environment:`
    interpolated from `.env.example` (as `docker compose --env-file .env` does)."""
    compose = yaml.safe_load((CONTROL / "compose.yaml").read_text())
    dotenv = read_env(CONTROL / ".env.example")
    spec = compose["services"][service]
    env: dict[str, str] = {}
    files = spec.get("env_file") or []
    for entry in [files] if isinstance(files, str) else files:
        name = entry["path"] if isinstance(entry, Mapping) else entry
        name = _interpolate(str(name), dotenv, f"{service}.env_file")
        env.update(read_env(CONTROL / f"{Path(name).name}.example"))
    for key, value in (spec.get("environment") or {}).items():
        env[key] = _interpolate(str(value), dotenv, f"{service}.environment.{key}")
    return env


def _interpolate(value: str, dotenv: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if dotenv.get(name) or (name in dotenv and not (op or "").startswith(":")):
            return dotenv[name]
        if op and op.endswith("-"):
            return arg
        raise AssertionError(f"compose.yaml {where} needs {name}, absent from .env.example")

    return INTERPOLATION.sub(one, value)


@cache
def project_env_names() -> frozenset[str]:
    """Every variable the project may read: the names in its source and in any env example."""
    names: set[str] = set()
    for package in ("unde_dagster", "unde_deploy"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(ENV_LITERAL.findall(path.read_text(encoding="utf-8")))
    for path in example_files():
        names |= set(read_env(path))
    return frozenset(names)


def use_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Exactly `env`, for every variable the project reads."""
    for name in project_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- instance (production dagster.yaml through an InstanceRef) ---------------------------


@pytest.fixture(scope="module")
def instance_ref(tmp_path_factory: pytest.TempPathFactory) -> InstanceRef:
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    return InstanceRef.from_dir(str(home))


def resolve_class_config(data: ConfigurableClassData) -> Mapping[str, Any]:
    """The config of one configurable class of the instance, env vars resolved (as
    `rehydrate` does) without constructing it: the storage would connect."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(
        resolve_to_config_type(klass.config_type()), yaml.safe_load(data.config_yaml) or {}
    )
    if not result.success:
        raise AssertionError(
            f"{data.module_name}.{data.class_name}: "
            + "; ".join(error.message for error in result.errors or [])
        )
    return result.value  # type: ignore[return-value]


# --- what runs where -----------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """One way a run is made: a named job, or a selection of the implicit asset job."""

    what: str
    job_name: str | None = None
    assets: frozenset[dg.AssetKey] | None = None

    def job(self, defs: dg.Definitions) -> dg.JobDefinition:
        if self.job_name is not None:
            return defs.resolve_job_def(self.job_name)
        job = defs.resolve_implicit_global_asset_job_def()
        return job.get_subset(asset_selection=set(self.assets or ()))


def launches(defs: dg.Definitions) -> list[Launch]:
    """Every named job, each asset alone and each role's assets from the UI (their checks
    included), and "Materialize all"."""
    roles = asset_roles(defs.resolve_asset_graph())
    made = [
        Launch(f"job {job.name}", job_name=job.name)
        for job in defs.resolve_all_job_defs()
        if not job.name.startswith("__")
    ]
    made += [
        Launch(f"UI: materialize {key.to_user_string()}", assets=frozenset([key]))
        for key in sorted(roles, key=lambda k: k.to_user_string())
    ]
    for role in sorted({r for r in roles.values() if r}):
        keys = frozenset(k for k, r in roles.items() if r == role)
        made.append(Launch(f"UI: materialize group {role}", assets=keys))
    made.append(Launch("UI: Materialize all", assets=frozenset(roles)))
    return made


@dataclass(frozen=True)
class Placement:
    """A process of one launch on one host: the run worker, and/or the steps of some assets
    (in process in the run worker, or in step containers on their role's host)."""

    launch: Launch
    run_worker: bool
    assets: frozenset[dg.AssetKey]  # whose steps execute on this host
    spans_roles: bool  # the run does several roles' work

    @property
    def what(self) -> str:
        if self.run_worker and self.assets:
            return self.launch.what
        return self.launch.what + (" (run worker)" if self.run_worker else " (step containers)")


def run_worker_instance(ref: InstanceRef, root: Path) -> dg.DagsterInstance:
    """The production instance as a run worker loads it from its ref, except that storage
    is in memory (the real one would connect): run launcher and coordinator from the ref."""
    from dagster._core.instance import InstanceType
    from dagster._core.storage.event_log import InMemoryEventLogStorage
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import LocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    return dg.DagsterInstance(
        instance_type=InstanceType.PERSISTENT,
        local_artifact_storage=LocalArtifactStorage(str(root)),
        run_storage=InMemoryRunStorage(),
        event_storage=InMemoryEventLogStorage(),
        run_coordinator=None,
        compute_log_manager=NoOpComputeLogManager(),
        run_launcher=None,
        ref=ref,
    )


def make_executor(job: dg.JobDefinition, instance: dg.DagsterInstance) -> Any:
    """The executor the run worker builds for `job` (as dagster's create_executor does)."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.executor.init import InitExecutorContext

    executor_def = job.executor_def
    schema = executor_def.config_schema
    config = process_config(schema.config_type, {}).value if schema else {}
    context = InitExecutorContext(
        job=InMemoryJob(job), executor_def=executor_def, executor_config=config,
        instance=instance,
    )
    return executor_def.executor_creation_fn(context)  # type: ignore[misc]


def plan(
    defs: dg.Definitions, launcher: RoleRoutedDockerRunLauncher, instance: dg.DagsterInstance
) -> dict[str, list[Placement]]:
    """Host → the processes it gets, from the production routing: the run worker on the
    launcher's host for the run's roles; the steps there too, unless the executor delegates
    them (then each on its role's host)."""
    from dagster._core.executor.step_delegating import StepDelegatingExecutor

    roles = asset_roles(defs.resolve_asset_graph())
    by_host: dict[str, list[Placement]] = {}
    for launch in launches(defs):
        job = launch.job(defs)
        keys = set(job.asset_layer.executable_asset_keys)
        run_roles = {roles[key] for key in keys}
        try:
            run_host = launcher.routing.engine_for_roles(run_roles, launch.what).name  # type: ignore[arg-type]
        except RoutingError:
            continue  # refused at submit (no host for runs spanning roles): nothing runs
        spans = len(run_roles) > 1
        if isinstance(make_executor(job, instance), StepDelegatingExecutor):
            by_host.setdefault(run_host, []).append(Placement(launch, True, frozenset(), spans))
            for role in sorted(run_roles):  # type: ignore[type-var]
                host = launcher.routing.engine_for_role(role).name  # type: ignore[arg-type]
                mine = frozenset(k for k in keys if roles[k] == role)
                by_host.setdefault(host, []).append(Placement(launch, False, mine, spans))
        else:
            by_host.setdefault(run_host, []).append(
                Placement(launch, True, frozenset(keys), spans)
            )
    return by_host


@pytest.fixture(scope="module")
def routed(
    instance_ref: InstanceRef, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[Placement]]:
    """What runs where, decided with the daemon's environment (where the launcher runs)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_env(monkeypatch, compose_env("daemon"))
        assert instance_ref.run_launcher_data is not None
        launcher = instance_ref.run_launcher_data.rehydrate(RunLauncher)
        assert isinstance(launcher, RoleRoutedDockerRunLauncher)
        root = tmp_path_factory.mktemp("daemon")
        with run_worker_instance(instance_ref, root) as instance:
            return plan(build_defs(), launcher, instance)


def build_defs() -> dg.Definitions:
    """The definitions as a process with the current environment loads them (resources read
    their optional tuning variables at load)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_defs()


def env_var_names(resource: Any) -> set[str]:
    """The `dg.EnvVar` names in one resource's config."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            if set(value) == {"env"}:
                yield value["env"]
            else:
                for item in value.values():
                    yield from walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)

    to_dict = getattr(resource, "_convert_to_config_dictionary", None)
    return set(walk(to_dict())) if to_dict else set()


def secret_names(defs: dg.Definitions) -> set[str]:
    """Variables that carry access (bound with `dg.EnvVar`), plus storage and webhook."""
    names = {"DAGSTER_PG_URL", WEBHOOK}
    for resource in (defs.resources or {}).values():
        names |= env_var_names(resource)
    return names


@dataclass
class HostNeeds:
    """What one host's processes resolved, and which variables they needed for it."""

    env_names: set[str]
    errors: list[str]
    resources: dict[str, Any]
    sends_alerts: bool


def missing_from(error: Exception) -> list[str]:
    return sorted(set(MISSING_ENV.findall(str(error)))) or [str(error).splitlines()[0]]


def resolve_role_host(
    host: str, placements: list[Placement], monkeypatch: pytest.MonkeyPatch,
    instance_ref: InstanceRef, root: Path,
) -> HostNeeds:
    """Every process routed to `host`, with exactly the host's run env."""
    env = role_host_env(host)
    if any(p.spans_roles for p in placements):  # what the entrypoint gives such processes
        env = build_env({**env, SPANS_ROLES_ENV: "1"})
        env.pop(SPANS_ROLES_ENV)
    use_env(monkeypatch, env)
    defs = build_defs()
    available = dict(defs.resources or {})
    with run_worker_instance(instance_ref, root) as instance:
        return _resolve_placements(placements, defs, available, instance, instance_ref)


def _resolve_placements(
    placements: list[Placement], defs: dg.Definitions, available: dict[str, Any],
    instance: dg.DagsterInstance, instance_ref: InstanceRef,
) -> HostNeeds:
    errors: list[str] = []
    needed: set[str] = {"DAGSTER_PG_URL"}
    used: set[str] = set()
    executed: set[dg.AssetKey] = set()
    for where in placements:
        job = where.launch.job(defs)
        what = where.what
        # Run worker and step worker alike build the plan of the run's whole job.
        try:
            ResolvedRunConfig.build(job, {})
        except DagsterInvalidConfigError as err:
            errors.append(f"{what}: run config needs {missing_from(err)}")
        needed |= {n for k in job.required_resource_keys if k in available
                   for n in env_var_names(available[k])}
        if where.run_worker:
            try:
                make_executor(job, instance)
            except Exception as err:
                errors.append(f"{what}: building the job's executor (it reads the "
                              f"instance's run launcher config) needs {missing_from(err)}")
        if where.assets:
            executed |= where.assets
            steps = defs.resolve_implicit_global_asset_job_def().get_subset(
                asset_selection=set(where.assets)
            )
            used |= set(steps.required_resource_keys) & set(available)
    initialized: dict[str, Any] = {}
    for key in sorted(used):
        try:
            initialized[key] = available[key].process_config_and_initialize()
        except Exception as err:  # pydantic validation, a missing env var
            errors.append(f"resource {key}: {missing_from(err)}")
    try:
        resolve_class_config(instance_ref.storage_data)  # type: ignore[arg-type]
    except AssertionError as err:
        errors.append(f"instance storage: {err}")
    checked = {c.asset_key for c in defs.resolve_asset_graph().asset_check_keys}
    return HostNeeds(needed, errors, initialized, sends_alerts=bool(checked & executed))


def resolve_code_server(monkeypatch: pytest.MonkeyPatch, instance_ref: InstanceRef) -> HostNeeds:
    """Every schedule and sensor tick, resources built as the code server builds them."""
    use_env(monkeypatch, compose_env("code-server"))
    defs = build_defs()
    repo = defs.get_repository_def()
    available = dict(defs.resources or {})
    errors: list[str] = []
    needed: set[str] = {"DAGSTER_PG_URL"}
    built: dict[str, Any] = {}
    for tick in [*repo.schedule_defs, *repo.sensor_defs]:
        keys = set(tick.required_resource_keys)
        assert keys <= set(available), f"{tick.name} needs resources not in the definitions"
        for key in keys:
            needed |= env_var_names(available[key])
        try:
            with dg.build_resources({k: available[k] for k in keys}) as resources:
                built.update({k: getattr(resources, k) for k in keys})
        except Exception as err:
            errors.append(f"{tick.name}: {missing_from(err)}")
    try:
        resolve_class_config(instance_ref.storage_data)  # type: ignore[arg-type]
    except AssertionError as err:
        errors.append(f"instance storage: {err}")
    sends = any(isinstance(s, dg.RunStatusSensorDefinition) for s in repo.sensor_defs)
    return HostNeeds(needed, errors, built, sends_alerts=sends)


def check_needs(name: str, path: Path, needs: HostNeeds, secrets: set[str]) -> None:
    """Nothing missing, and the file holds no variable nothing reads nor a secret nothing
    on this host needs."""
    env = read_env(path)
    problems = list(needs.errors)
    if needs.sends_alerts and not env.get(WEBHOOK):
        problems.append(f"{WEBHOOK}: alerts are sent from here and would only be logged")
    required = needs.env_names | ({WEBHOOK} if needs.sends_alerts else set())
    for var in sorted(env):
        if var not in project_env_names():
            problems.append(f"{var}: read by nothing in the project")
        elif var in secrets and var not in required:
            problems.append(f"{var}: a secret nothing on this host needs")
    if problems:
        report = f"{name} ({path.relative_to(ROOT)}):\n  " + "\n  ".join(problems)
        pytest.fail(report, pytrace=False)


# --- the tests: config per host -----------------------------------------------------------


def test_every_host_that_gets_work_has_one_env_example(
    routed: dict[str, list[Placement]],
) -> None:
    examples = {
        p.name.removesuffix(".run.env.example") for p in ROLE_HOSTS.glob("*.run.env.example")
    }
    assert set(routed) <= examples, f"hosts without a run env example: {set(routed) - examples}"
    assert examples <= set(role_host_names()), f"examples of no host: {examples - set(routed)}"


def one_role_hosts() -> list[str]:
    return sorted(set(launcher_config()["role_hosts"].values()))


@pytest.mark.parametrize("host", role_host_names())
def test_host_env_resolves_its_one_role_runs(
    host: str, routed: dict[str, list[Placement]], monkeypatch: pytest.MonkeyPatch,
    instance_ref: InstanceRef, tmp_path: Path,
) -> None:
    """Every schedule, sensor and UI run of one role: one container on its role's host."""
    mine = [p for p in routed.get(host, []) if not p.spans_roles]
    if host not in one_role_hosts():
        assert not mine, f"{host} is no role's host, yet gets {[p.what for p in mine]}"
        return
    path = ROLE_HOSTS / f"{host}.run.env.example"
    assert path.exists(), f"{host} gets runs but has no {path.name}"
    assert mine, f"no one-role run lands on {host}"
    defs = build_defs()
    needs = resolve_role_host(host, mine, monkeypatch, instance_ref, tmp_path)
    everything = resolve_role_host(host, routed[host], monkeypatch, instance_ref, tmp_path)
    needs.env_names |= everything.env_names  # a secret is stray only if nothing here uses it
    needs.sends_alerts |= everything.sends_alerts
    check_needs(host, path, needs, secret_names(defs))
    # What the image entrypoint checks before the run starts (names from dagster.yaml).
    required = launcher_config().get("env_vars") or []
    build_env({"UNDE_ENV_FILE": str(path), "UNDE_REQUIRED_ENV": ",".join(required)})
    downloader = needs.resources.get("photo_downloader")
    env = role_host_env(host)
    if downloader is not None:  # this host's runs fetch photos through the proxy
        assert downloader.proxy_ca_bundle == PROXY_CA_BUNDLE, (
            f"{host}: PROXY_CA_BUNDLE must be {PROXY_CA_BUNDLE} (the proxy's CA, mounted from "
            f"{PROXY_CA_HOST_DIR}), not {downloader.proxy_ca_bundle!r}"
        )
        assert urlsplit(downloader.proxy_url).port == PROXY_PORT, f"{host}: PROXY_URL port"
    else:
        assert "PROXY_CA_BUNDLE" not in env, f"{host}: no run here fetches through the proxy"


@pytest.mark.parametrize("host", role_host_names())
def test_host_env_resolves_its_part_of_runs_spanning_roles(
    host: str, routed: dict[str, list[Placement]], monkeypatch: pytest.MonkeyPatch,
    instance_ref: InstanceRef, tmp_path: Path,
) -> None:
    """The brand pipeline job, "Materialize all", a `+product_collages` backfill: wherever
    the routing puts their run worker and their steps. A step container plans the run's
    whole job (`dagster api execute_step`), so it resolves every resource of the run, not
    only its step's."""
    mine = [p for p in routed.get(host, []) if p.spans_roles]
    if not mine:
        return
    path = ROLE_HOSTS / f"{host}.run.env.example"
    assert path.exists(), (
        f"{host} gets {sorted({p.what for p in mine})} but has no {path.name}"
    )
    needs = resolve_role_host(host, mine, monkeypatch, instance_ref, tmp_path)
    if needs.errors:
        pytest.fail(
            f"{host} ({path.relative_to(ROOT)}), where each process plans the run's whole "
            "job:\n  " + "\n  ".join(needs.errors),
            pytrace=False,
        )


def test_code_server_env_resolves_every_schedule_and_sensor(
    monkeypatch: pytest.MonkeyPatch, instance_ref: InstanceRef
) -> None:
    path = CONTROL / "code-server.env.example"
    secrets = secret_names(build_defs())
    needs = resolve_code_server(monkeypatch, instance_ref)
    check_needs("code server", path, needs, secrets)
    proxy = urlsplit(read_env(path).get("PROXY_URL", ""))
    assert proxy.password is None, (
        "code server: PROXY_URL only configures the retry schedule and is never dialled "
        "there, so it carries no proxy credentials"
    )


def test_control_plane_env_resolves_the_instance(
    monkeypatch: pytest.MonkeyPatch, instance_ref: InstanceRef
) -> None:
    for service in ("daemon", "webserver"):
        use_env(monkeypatch, compose_env(service))
        for data in (instance_ref.storage_data, instance_ref.run_coordinator_data,
                     instance_ref.run_launcher_data):
            assert data is not None
            resolve_class_config(data)
        assert instance_ref.run_coordinator_data is not None
        instance_ref.run_coordinator_data.rehydrate(RunCoordinator)


def example_files() -> list[Path]:
    """Every env example: the control plane's (`.env.example` included) and the run hosts'."""
    return sorted({*CONTROL.glob("*.example"), CONTROL / ".env.example",
                   *ROLE_HOSTS.glob("*.example")})


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_values_have_the_right_shape(path: Path) -> None:
    """Each value stands in for a secret: set, and a URL where a URL is read."""
    env = read_env(path)
    for var, value in env.items():
        assert value.strip(), f"{path.name}: {var} is empty"
        if var.endswith("_URL") or var.startswith("DAGSTER_PG_URL"):
            url = urlsplit(value)
            if var.endswith("DB_URL") or var.startswith("DAGSTER_PG_URL"):
                assert url.scheme == "postgresql" and url.hostname and url.path.strip("/"), (
                    f"{path.name}: {var}={value!r} is not a postgresql:// URL with a database"
                )
            else:
                assert url.scheme in ("http", "https") and url.hostname, (
                    f"{path.name}: {var}={value!r} is not an http(s) URL"
                )
    if "PROXY_URL" in env:
        port = urlsplit(env["PROXY_URL"]).port
        assert port == PROXY_PORT, (
            f"{path.name}: PROXY_URL port {port}; the 22225/33335 certificates expired "
            f"2026-09-25, use {PROXY_PORT} with brightdata_root_ca_{PROXY_PORT}.crt"
        )
    for var, value in env.items():
        for port in EXPIRED_PROXY_PORTS:
            assert f":{port}" not in value, f"{path.name}: {var} uses expired proxy port {port}"


def test_run_containers_reach_storage_on_the_control_plane() -> None:
    """Every run env's DAGSTER_PG_URL is the transaction pool the control plane publishes."""
    dotenv = read_env(CONTROL / ".env.example")
    inside = urlsplit(dotenv["DAGSTER_PG_URL_TRANSACTION"])
    for path in sorted(ROLE_HOSTS.glob("*.run.env.example")):
        host = path.name
        url = urlsplit(read_env(path)["DAGSTER_PG_URL"])
        assert url.hostname == dotenv["CONTROL_PLANE_PRIVATE_IP"], host
        assert (url.port, url.path, url.username) == (inside.port, inside.path, inside.username)


# --- the images' requirement files ---------------------------------------------------------

IMAGE_PYTHON = "3.11"
IMAGE_MARKERS = {
    **default_environment(),
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": IMAGE_PYTHON,
    "python_full_version": f"{IMAGE_PYTHON}.0",
}
# What the control-plane image runs beyond unde_deploy's imports (compose commands and the
# storage module of dagster.yaml); unde_deploy's own imports are read from its source.
CONTROL_PLANE_RUNS = ("dagster", "dagster-webserver", "dagster-graphql", "dagster-postgres")


def applies(req: Requirement, extra: str | None = None) -> bool:
    if req.marker is None:
        return True
    return req.marker.evaluate({**IMAGE_MARKERS, "extra": extra or ""})


def read_pins(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {line} not pinned"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}: {req.name} pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


def setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    """install_requires and extras_require of setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and [type(t) for t in node.targets] == [ast.Name]:
            with contextlib.suppress(ValueError):
                constants[node.targets[0].id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return constants[node.id]
        if isinstance(node, ast.List):
            return [value(item) for item in node.elts]
        if isinstance(node, ast.Dict):
            return {value(k): value(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
        return ast.literal_eval(node)

    call = next(
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    extras = value(kwargs["extras_require"]) if "extras_require" in kwargs else {}
    return value(kwargs["install_requires"]), extras


def installed_requires(
    name: str, version: Version, *, exact: bool = True
) -> list[Requirement] | None:
    """The dependencies of `name==version` from this venv's metadata, if it holds that
    version (or, with exact=False, any version: what an extra pulls in rarely changes)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if exact and Version(dist.version) != version:
        return None
    return [Requirement(r) for r in dist.requires or []]


def unsatisfied(wanted: Iterable[Requirement], pins: Mapping[str, Version],
                extra: str | None = None) -> list[str]:
    """Requirements (and their extras' requirements) that the pins do not satisfy."""
    problems: list[str] = []
    for req in wanted:
        if not applies(req, extra):
            continue
        name = canonicalize_name(req.name)
        pinned = pins.get(name)
        if pinned is None:
            problems.append(f"{req} (not in the file)")
            continue
        if not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req} (pinned {pinned})")
        for wanted_extra in req.extras:
            deps = installed_requires(name, pinned, exact=False)
            if deps is None:
                problems.append(f"{req}: extra [{wanted_extra}] unverifiable (venv lacks "
                                f"{name}=={pinned})")
                continue
            only_extra = [d for d in deps if applies(d, wanted_extra) and not applies(d)]
            problems += [f"{p} (extra [{wanted_extra}] of {name})"
                         for p in unsatisfied(only_extra, pins, wanted_extra)]
    return problems


def closure_problems(pins: Mapping[str, Version]) -> list[str]:
    """Dependencies of each pin (read from this venv where it holds the pinned version)."""
    problems: list[str] = []
    for name, version in sorted(pins.items()):
        deps = installed_requires(name, version)
        if deps is not None:
            problems += [f"{name}=={version} needs {p}" for p in unsatisfied(deps, pins)]
    return problems


def test_user_code_image_satisfies_setup_py() -> None:
    install_requires, extras = setup_requirements()
    wanted = [Requirement(r) for r in [*install_requires, *extras["fast-collage"]]]
    pins = read_pins(DOCKER / "requirements-user-code.txt")
    problems = unsatisfied(wanted, pins) + closure_problems(pins)
    assert not problems, "requirements-user-code.txt:\n  " + "\n  ".join(problems)


# Modules of unde_deploy that run only in the user-code image: the container entrypoint and
# the executor of multi-role runs (in the run worker); the control plane never imports them.
USER_CODE_ONLY = {"entrypoint.py", "executor.py"}


def imported_distributions(package: Path) -> set[str]:
    """Distributions whose top-level modules `package` imports (stdlib and itself excluded),
    except in the modules only the user-code image runs."""
    modules: set[str] = set()
    for path in package.rglob("*.py"):
        if path.name in USER_CODE_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    by_module = metadata.packages_distributions()
    dists: set[str] = set()
    for module in modules - {package.name, "__future__"}:
        if module in by_module:
            dists |= {canonicalize_name(d) for d in by_module[module]}
        else:
            assert module in _stdlib(), f"{package.name} imports {module}: which distribution?"
    return dists


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)


def test_control_plane_image_satisfies_unde_deploy() -> None:
    install_requires, _ = setup_requirements()
    declared = {canonicalize_name(Requirement(r).name): Requirement(r) for r in install_requires}
    needed = imported_distributions(ROOT / "unde_deploy") | {
        canonicalize_name(n) for n in CONTROL_PLANE_RUNS
    }
    assert {"dagster", "dagster-docker", "docker"} <= needed
    wanted = [declared.get(name) or Requirement(name) for name in sorted(needed)]
    pins = read_pins(DOCKER / "requirements-control-plane.txt")
    problems = unsatisfied(wanted, pins) + closure_problems(pins)
    assert not problems, "requirements-control-plane.txt:\n  " + "\n  ".join(problems)


def test_image_pins_agree_with_each_other() -> None:
    """A package in both images has one version: the control plane unpickles what the code
    server and the runs serialize (Dagster's lockstep set above all)."""
    user = read_pins(DOCKER / "requirements-user-code.txt")
    control = read_pins(DOCKER / "requirements-control-plane.txt")
    differ = {n: (user[n], control[n]) for n in user.keys() & control.keys()
              if user[n] != control[n]}
    assert not differ, differ
