"""`python -m unde_local up|down|env|demo|ui|engines|control-plane` — the local stack from the
command line."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from unde_local.dagster_services import DagsterServices, live_pid

PROJECT_DIR = Path(__file__).resolve().parent.parent


def stack_root(name: str) -> Path:
    return PROJECT_DIR / ".local" / name


def _running_pid(root: Path) -> int | None:
    return live_pid(root / "stack.pid")


def _prepare_dagster_home(root: Path) -> None:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "unde_local" / "dagster.yaml", home / "dagster.yaml")


def cmd_up(args: argparse.Namespace) -> None:
    root = stack_root(args.name)
    if _running_pid(root):
        print(f"stack {args.name!r} already running (pid {_running_pid(root)})")
        return
    if args.detach:
        root.mkdir(parents=True, exist_ok=True)
        (root / "ready").unlink(missing_ok=True)
        log = open(root / "stack.log", "ab")  # noqa: SIM115 (handed to the child)
        cmd = [sys.executable, "-m", "unde_local", "up", "--name", args.name]
        cmd += ["--items", str(args.items)]
        subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, cwd=PROJECT_DIR)
        deadline = time.monotonic() + 180
        while not (root / "ready").exists():
            if time.monotonic() > deadline:
                sys.exit(f"the stack did not come up; see {root / 'stack.log'}")
            time.sleep(0.3)
        print(f"stack {args.name!r} is up; variables in {root / 'stack.env'}")
        return

    from unde_local.stack import LocalStack, StackSettings, database_url_from_env

    stack = LocalStack(
        StackSettings(root=root, items_per_brand=args.items, database_url=database_url_from_env())
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stack.start()
        _prepare_dagster_home(root)
        (root / "stack.pid").write_text(str(os.getpid()))
        print(f"PostgreSQL: {stack.postgres.origin}", flush=True)
        for key in ("S3_ENDPOINT", "APIFY_API_URL", "XIMILAR_API_URL", "FAL_QUEUE_URL"):
            print(f"{key}={stack.env.get(key, '-')}", flush=True)
        (root / "ready").write_text("1")
        stop.wait()
    finally:
        (root / "ready").unlink(missing_ok=True)
        (root / "stack.pid").unlink(missing_ok=True)
        stack.stop()


def _services(name: str, port: int = 3000) -> DagsterServices:
    from unde_local.stack import pipeline_env

    root = stack_root(name)
    return DagsterServices(root / "services", pipeline_env(root, PROJECT_DIR), port=port)


def cmd_down(args: argparse.Namespace) -> None:
    root = stack_root(args.name)
    if (root / "stack.env").exists():
        _services(args.name).stop()
    pid = _running_pid(root)
    if not pid:
        print(f"stack {args.name!r} is not running")
        return
    os.kill(pid, signal.SIGTERM)
    while _running_pid(root):
        time.sleep(0.2)
    print(f"stack {args.name!r} stopped (data kept in {root})")


def _ensure_up(args: argparse.Namespace) -> dict[str, str]:
    from unde_local.stack import pipeline_env

    cmd_up(argparse.Namespace(name=args.name, detach=True, items=args.items))
    return pipeline_env(stack_root(args.name), PROJECT_DIR)


def cmd_env(args: argparse.Namespace) -> None:
    from unde_local.stack import pipeline_env

    for key, value in sorted(pipeline_env(stack_root(args.name), PROJECT_DIR).items()):
        print(f"export {key}='{value}'")


def cmd_demo(args: argparse.Namespace) -> None:
    os.environ.update(_ensure_up(args))
    from unde_local.demo import run_demo

    run_demo(args.brand)
    if not args.no_ui:
        cmd_ui(args)


def cmd_demo_scraper(args: argparse.Namespace) -> None:
    os.environ.update(_ensure_up(args))
    from unde_local.demo_scraper import run_scraper_demo

    run_scraper_demo(args.brand)


def cmd_ui(args: argparse.Namespace) -> None:
    """Leave the webserver and the daemon running in the background on the stack."""
    _ensure_up(args)
    services = _services(args.name, args.port)
    services.start()
    print(f"\nDagster UI (webserver + daemon) on stack {args.name!r}: {services.url}")
    print(f"logs in {services.run_dir}; stop everything with: python -m unde_local down")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m unde_local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "up": (cmd_up, "start the stack (foreground; --detach to background it)"),
        "down": (cmd_down, "stop a detached stack (its data stays)"),
        "env": (cmd_env, "print the stack's variables as shell exports"),
        "demo": (cmd_demo, "bring the stack up and run the brand pipeline for one brand"),
        "demo-scraper": (
            cmd_demo_scraper,
            "availability + production sync of a brand and 3 model-library templates",
        ),
        "ui": (cmd_ui, "bring the stack up and leave the Dagster UI and daemon running"),
    }
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        p.add_argument("--name", default="demo", help="stack folder under .local/")
        p.add_argument("--items", type=int, default=30, help="catalog items per brand")
        if name == "up":
            p.add_argument("--detach", action="store_true")
        if name in {"demo", "demo-scraper"}:
            p.add_argument("--brand", default="zara")
        if name in {"demo", "ui"}:
            p.add_argument("--port", type=int, default=3000, help="Dagster UI port")
        if name == "demo":
            p.add_argument("--no-ui", action="store_true", help="do not leave the UI running")
    harness = {"engines": "unde_local.engines", "control-plane": "unde_local.control_plane"}
    for name, module in harness.items():  # listed here; their own parsers take the rest
        sub.add_parser(name, help=f"deployment test harness ({module}; see its --help)")
    if sys.argv[1:2] and sys.argv[1] in harness:
        importlib.import_module(harness[sys.argv[1]]).cli(sys.argv[2:])
        return
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
