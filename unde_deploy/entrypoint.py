"""Image entrypoint: load the role host's env file, check required names, exec the command.

Why: the launcher passes env var NAMES only, so secret values never travel through the
control plane, the Docker API calls or the run record; they live in the role host's
`/etc/unde/run.env` (mode 0600), mounted read-only into each run container.
Parsing follows Docker's env_file rules: KEY=VALUE per line, `#` comments, no quoting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence


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
    return env


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m unde_deploy.entrypoint COMMAND [ARGS...]")
    env = build_env(os.environ)
    os.execvpe(argv[0], list(argv), env)


if __name__ == "__main__":
    main(sys.argv[1:])
