"""`python -m unde_local up|down|env|demo|ui|engines|control-plane` — the local stack from the
command line."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

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
    """The run goes through the queue, so the webserver (to launch) and the daemon (to
    dequeue) start first; with --no-ui they stop again once the run has finished."""
    os.environ.update(_ensure_up(args))
    from unde_local.demo import run_demo
    from unde_local.postgres import free_port

    services = _services(args.name, free_port() if args.no_ui else args.port)
    services.start()
    try:
        run_demo(args.brand, services.url)
    finally:
        if args.no_ui:
            services.stop()
    if not args.no_ui:
        print(f"\nDagster UI (webserver + daemon) on stack {args.name!r}: {services.url}")
        print(f"logs in {services.run_dir}; stop everything with: python -m unde_local down")


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


HARNESS = {"engines": "unde_local.engines", "control-plane": "unde_local.control_plane"}
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class CliError(argparse.ArgumentTypeError):
    """A wrong value, said in one line that lists the valid ones (no usage dump)."""


class _Parser(argparse.ArgumentParser):
    """Answers a wrong command, option or value with one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        match = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if match and match.group(2).startswith("unknown "):  # our own CliError text
            text = match.group(2)
        elif match and match.group(1) == "command":
            value = re.search(r"invalid choice: '([^']*)'", match.group(2))
            text = _command_error(value.group(1) if value else match.group(2))
        elif message.startswith("the following arguments are required: command"):
            text = f"a command is needed: valid commands are {', '.join(_command_names())}"
        else:
            text = f"{message} (see: {self.prog} --help)"
        self.exit(2, f"{self.prog}: {text}\n")


_COMMANDS: dict[str, tuple[Any, str]] = {}


def _command_names() -> list[str]:
    return [*_COMMANDS, *HARNESS]


def _command_error(value: str) -> str:
    return f"unknown command {value!r}: valid commands are {', '.join(_command_names())}"


def brand_arg(value: str) -> str:
    """A brand key of `unde_dagster/brands.yaml`, else one line listing them."""
    from unde_dagster.brands import load_brands

    brands = sorted(load_brands())
    if value not in brands:
        raise CliError(f"unknown brand {value!r}: valid brands are {', '.join(brands)}")
    return value


def count_arg(value: str) -> int:
    """A whole number of 1 or more (catalog items per brand)."""
    if not value.isdigit() or int(value) < 1:
        raise CliError(f"unknown count {value!r}: --items takes a whole number of 1 or more")
    return int(value)


def port_arg(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise CliError(f"unknown port {value!r}: valid ports are 1-65535")
    return int(value)


def name_arg(value: str) -> str:
    """A stack folder name under .local/ (never a path that leaves it)."""
    if not value or value.startswith(".") or not set(value) <= NAME_CHARS:
        raise CliError(
            f"unknown stack name {value!r}: valid names use letters, digits, '-', '_' and "
            "'.' (not first), e.g. demo"
        )
    return value


def build_parser() -> _Parser:
    parser = _Parser(prog="python -m unde_local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _COMMANDS.clear()
    _COMMANDS.update({
        "up": (cmd_up, "start the stack (foreground; --detach to background it)"),
        "down": (cmd_down, "stop a detached stack (its data stays)"),
        "env": (cmd_env, "print the stack's variables as shell exports"),
        "demo": (cmd_demo, "bring the stack up and run the brand pipeline for one brand"),
        "demo-scraper": (
            cmd_demo_scraper,
            "availability + production sync of a brand and 3 model-library templates",
        ),
        "ui": (cmd_ui, "bring the stack up and leave the Dagster UI and daemon running"),
    })
    for name, (func, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, prog=f"python -m unde_local {name}")
        p.set_defaults(func=func)
        p.add_argument("--name", default="demo", type=name_arg, help="stack folder under .local/")
        p.add_argument("--items", type=count_arg, default=30, help="catalog items per brand")
        if name == "up":
            p.add_argument("--detach", action="store_true")
        if name in {"demo", "demo-scraper"}:
            p.add_argument("--brand", default="zara", type=brand_arg)
        if name in {"demo", "ui"}:
            p.add_argument("--port", type=port_arg, default=3000, help="Dagster UI port")
        if name == "demo":
            p.add_argument("--no-ui", action="store_true", help="do not leave the UI running")
    for name, module in HARNESS.items():  # listed here; their own parsers take the rest
        sub.add_parser(name, help=f"deployment test harness ({module}; see its --help)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, or exit 2 with one line naming what is wrong and what is valid."""
    parser = build_parser()
    if argv[:1] and not argv[0].startswith("-") and argv[0] not in _command_names():
        parser.exit(2, f"{parser.prog}: {_command_error(argv[0])}\n")
    if argv[:1] and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        parser.exit(2, f"{parser.prog}: options go after the command ({argv[0]!r} came first): "
                       f"valid commands are {', '.join(_command_names())}\n")
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        options = sorted(
            o for a in sub.choices[args.command]._actions for o in a.option_strings
            if o.startswith("--")
        )
        word = "option" if extra[0].startswith("-") else "argument"
        parser.exit(2, f"python -m unde_local {args.command}: unknown {word} {extra[0]!r}: "
                       f"valid options are {', '.join(options)}\n")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in HARNESS:
        importlib.import_module(HARNESS[argv[0]]).cli(argv[1:])
        return
    args = parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
