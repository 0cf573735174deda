"""`python -m unde_local`: a wrong command, option or value is one clear line, exit code 2.

The parser runs in-process and refuses before any command function runs, so no stack
starts; one case goes through a real subprocess to check what a user sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unde_dagster.brands import load_brands
from unde_local import __main__ as cli

PROJECT_DIR = Path(__file__).resolve().parents[2]
BRANDS = ", ".join(sorted(load_brands()))
COMMANDS = "up, down, env, demo, demo-scraper, ui, engines, control-plane"


@pytest.fixture(autouse=True)
def no_command_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any command function reached would be a test failure, never a stack start."""
    for name in ("cmd_up", "cmd_down", "cmd_env", "cmd_demo", "cmd_demo_scraper", "cmd_ui"):
        monkeypatch.setattr(cli, name, lambda args, name=name: pytest.fail(f"{name} ran"))


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line, no usage, no traceback
    return err.rstrip("\n")


@pytest.mark.parametrize("command", ["demo", "demo-scraper"])
def test_unknown_brand_lists_the_valid_ones(command: str, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    line = refused([command, "--brand", "nosuch"], capsys)
    assert line == (f"python -m unde_local {command}: unknown brand 'nosuch': valid brands "
                    f"are {BRANDS}")
    assert BRANDS.startswith("bershka, ")


def test_brand_keys_are_exact(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown brand 'Zara'" in refused(["demo", "--brand", "Zara"], capsys)


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused(["nosuch"], capsys) == (
        f"python -m unde_local: unknown command 'nosuch': valid commands are {COMMANDS}"
    )


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused([], capsys) == (
        f"python -m unde_local: a command is needed: valid commands are {COMMANDS}"
    )


def test_option_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["--name", "x", "demo"], capsys)
    assert "options go after the command ('--name' came first)" in line
    assert COMMANDS in line


def test_unknown_option_lists_the_command_s_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused(["demo", "--nosuch"], capsys) == (
        "python -m unde_local demo: unknown option '--nosuch': valid options are --brand, "
        "--help, --items, --name, --no-ui, --port"
    )
    # an option of another command is unknown here too
    assert refused(["up", "--brand", "zara"], capsys).startswith(
        "python -m unde_local up: unknown option '--brand': valid options are --detach, "
    )


def test_stray_argument(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["down", "extra"], capsys)
    assert line.startswith("python -m unde_local down: unknown argument 'extra': valid options")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "--items", "abc"], "unknown count 'abc': --items takes a whole number of 1"),
        (["up", "--items", "0"], "unknown count '0'"),
        (["demo", "--port", "99999"], "unknown port '99999': valid ports are 1-65535"),
        (["up", "--name", "../elsewhere"], "unknown stack name '../elsewhere': valid names"),
        (["env", "--name", ".hidden"], "unknown stack name '.hidden'"),
        (["demo", "--brand"], "argument --brand: expected one argument (see: python -m "
                              "unde_local demo --help)"),
    ],
)
def test_wrong_values(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in refused(argv, capsys)


def test_good_command_lines_parse() -> None:
    args = cli.parse_args(["demo", "--brand", "bershka", "--items", "5", "--port", "3001",
                           "--no-ui", "--name", "my-demo_1.x"])
    assert (args.command, args.brand, args.items, args.port, args.no_ui, args.name) == (
        "demo", "bershka", 5, 3001, True, "my-demo_1.x")
    assert cli.parse_args(["demo-scraper"]).brand == "zara"
    assert cli.parse_args(["up", "--detach"]).items == 30


def test_a_user_sees_one_line_and_exit_code_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unde_local", "demo", "--brand", "nosuch"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"python -m unde_local demo: unknown brand 'nosuch': valid brands are {BRANDS}\n"
    )


def test_photo_size_option_is_opt_in() -> None:
    """UNDE_LOCAL_PHOTO_SIZE (the scale bench's small photos): unset keeps the default pool;
    a wrong value says what is expected."""
    from unde_local.emulators import Emulators
    from unde_local.fixtures.photos import POOL_SIZES, parse_photo_sizes, pool_sizes_from_env

    assert pool_sizes_from_env({}) == POOL_SIZES
    assert pool_sizes_from_env({"UNDE_LOCAL_PHOTO_SIZE": " "}) == POOL_SIZES
    assert pool_sizes_from_env({"UNDE_LOCAL_PHOTO_SIZE": "200x300,300X400"}) == (
        (200, 300), (300, 400))
    for bad in ("200", "200x", "ax300", "10x300", "200x9000"):
        with pytest.raises(ValueError, match="expected WIDTHxHEIGHT"):
            parse_photo_sizes(bad)
    assert Emulators(photo_sizes=((200, 300),)).photo_pool.sizes == ((200, 300),)


def test_small_photos_are_served_at_their_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from PIL import Image

    from unde_local.emulators import Emulators

    monkeypatch.setenv("UNDE_LOCAL_PHOTO_SIZE", "200x300")
    pool = Emulators().photo_pool
    data = pool.for_url("/zara/photos/2026/V/0208/6797/800/02086797800-p.jpg", 1920)
    assert Image.open(io.BytesIO(data)).size == (200, 300)
    monkeypatch.delenv("UNDE_LOCAL_PHOTO_SIZE")
    assert len(Emulators().photo_pool) == 12  # the default pool, unchanged
