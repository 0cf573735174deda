"""The layout's promises: domain code runs without Dagster, private Dagster imports are known."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGSTER_SIDE = {"defs", "resources", "definitions"}  # unde_dagster's Dagster rooms

# Every private Dagster import in shipped code, and why no public API does instead.
PRIVATE_IMPORTS = {
    ("dagster._core.launcher.base", "LaunchRunContext"): "run launcher's context type",
    ("dagster._core.launcher.base", "ResumeRunContext"): "run launcher's context type",
    ("dagster._core.storage.tags", "DOCKER_IMAGE_TAG"): "the tag DockerRunLauncher records",
    ("dagster._core.workspace.context", "BaseWorkspaceRequestContext"): "workspace type",
    ("dagster._grpc.types", "ExecuteRunArgs"): "the run-worker command a launcher builds",
    ("dagster._grpc.types", "ResumeRunArgs"): "the resume command a launcher builds",
    ("dagster._serdes.config_class", "ConfigurableClassData"): "dagster.yaml block of a launcher",
    ("dagster._core.definitions.assets.graph.base_asset_graph", "BaseAssetGraph"): "graph type",
    ("dagster._core.remote_representation.external", "RemoteRepository"): "code location type",
    # unde_deploy/executor.py: a step-delegating executor is made of these, as dagster-docker's
    ("dagster._core.events", "DagsterEvent"): "events a step handler yields",
    ("dagster._core.events", "EngineEventData"): "events a step handler yields",
    ("dagster._core.execution.retries", "RetryMode"): "executor retry mode",
    ("dagster._core.executor.base", "Executor"): "executor type",
    ("dagster._core.executor.in_process", "InProcessExecutor"): "the one-role runs' executor",
    ("dagster._core.executor.init", "InitExecutorContext"): "executor factory's context",
    ("dagster._core.executor.step_delegating", "StepDelegatingExecutor"): "multi-role runs",
    ("dagster._core.executor.step_delegating.step_handler.base", "CheckStepHealthResult"):
        "step handler API",
    ("dagster._core.executor.step_delegating.step_handler.base", "StepHandlerContext"):
        "step handler API",
}


def domain_modules() -> list[str]:
    names = []
    for path in sorted((ROOT / "unde_dagster").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[1] in DAGSTER_SIDE or parts[1] == "__init__":
            continue
        names.append(".".join(p for p in parts if p != "__init__"))
    return names


def test_domain_modules_import_without_dagster() -> None:
    modules = domain_modules()
    assert "unde_dagster.originals.stage" in modules and "unde_dagster.storage.keys" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'dagster' in sys.modules:\n"
        "        print(name); sys.exit(1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"{done.stdout.strip()} loads dagster: {done.stderr[-2000:]}"


def private_imports() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in ("unde_dagster", "unde_deploy", "unde_local"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "dagster._"
                ):
                    found |= {(node.module or "", alias.name) for alias in node.names}
                elif isinstance(node, ast.Import):
                    found |= {(a.name, "") for a in node.names if a.name.startswith("dagster._")}
    return found


def test_private_dagster_imports_are_the_known_ones() -> None:
    assert private_imports() == set(PRIVATE_IMPORTS)


@pytest.mark.parametrize(("module", "name"), sorted(PRIVATE_IMPORTS))
def test_private_dagster_imports_still_exist(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} moved"
