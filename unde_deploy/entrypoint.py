"""Image entrypoint: load the role host's env file, check required names, exec the command.

Why: the launcher passes env var NAMES only, so secret values never travel through the
control plane, the Docker API calls or the run record; they live in the role host's
`/etc/unde/run.env` (mode 0600), mounted read-only into each run container.
Parsing follows Docker's env_file rules: KEY=VALUE per line, `#` comments, no quoting.

A run spanning roles (`UNDE_SPANS_ROLES=1`, set by the launcher and the step handler) plans
its whole job in every process, so Dagster resolves the config of every resource of the run,
also those of other roles' steps. Their secrets stay on their own hosts: a name this host
does not set gets the inert value `unset-on-this-host:<NAME>`. Dagster initializes only a
step's own resources, whose values this host's env file holds (the step runs on its role's
host); a misrouted step fails on the placeholder, never with another host's secret.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from unde_deploy.roles import SPANS_ROLES_ENV


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as Docker's `--env-file` reads them (values kept verbatim)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value
    return values


def build_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: ours, overlaid by the env file; missing names fail fast."""
    env = dict(environ)
    path = environ.get("UNDE_ENV_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            env.update(parse_env_file(fh.read()))
    required = [n for n in environ.get("UNDE_REQUIRED_ENV", "").split(",") if n]
    missing = [name for name in required if not env.get(name)]
    if missing:
        raise SystemExit(f"unde entrypoint: env file {path or '(none)'} lacks {missing}")
    if environ.get(SPANS_ROLES_ENV) == "1":
        for name in sorted(resource_env_names() - set(env)):
            env[name] = f"{PLACEHOLDER}:{name}"
    return env


PLACEHOLDER = "unset-on-this-host"


def resource_env_names() -> set[str]:
    """Every environment variable a resource of the code location reads (user code only)."""
    from unde_dagster.defs.resources import env_var_names

    return env_var_names()


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m unde_deploy.entrypoint COMMAND [ARGS...]")
    env = build_env(os.environ)
    os.execvpe(argv[0], list(argv), env)


if __name__ == "__main__":
    main(sys.argv[1:])
