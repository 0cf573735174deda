"""Benchmark our collage builder against the seed's algorithm and the bare JPEG codec.

Plain script, printed figures (not a test). Every figure comes from a fresh subprocess so
peak RSS (``ru_maxrss``) and allocator state of one variant never leak into another.

Variants:
  seed   bench/seed_collage.py, the seed's Pillow code on bytes in / bytes out
  ours   unde_dagster.collages.compose.build_collage, in a process set up like a
         CollagePool worker (pool.configure_worker), once per resampler
         (``ours[cykooz]``, ``ours[pillow]``: UNDE_COLLAGE_RESAMPLER set for the
         subprocess, and the row is named by the resampler the subprocess reports it ran)
  codec  decode of the same input JPEGs + one q95 4:4:4 encode of the same output pixels
         (no resize, no paste): the floor for equal heights
  floor  codec + Pillow's LANCZOS resizes the geometry demands: the floor for any
         implementation pixel-identical to the seed on the mixed set
  rfloor codec + the same resizes with cykooz (compose.lanczos3_upscale): the floor for
         ours[cykooz] on the mixed set (ours[pillow]'s floor is ``floor``)

Each set also prints how far our pixels are from the seed's (both collages decoded, every
channel of every pixel): mean and max absolute difference and the 99.9th percentile.

"CPU ms" is the median process CPU time per SKU (1 process): on a machine shared with other
jobs it moves far less than wall-clock figures, and on 2 idle cores the 2-process throughput
ratio follows it.

Run:  .venv/bin/python bench/collage_bench.py [--rounds 3] [--runs 3] [--skus 8]
          [--resamplers all|cykooz,pillow|auto]   (all: every one installed, side by side)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from unde_dagster.collages.pool import configure_worker  # noqa: E402
from unde_dagster.collages.resampler import (  # noqa: E402
    AUTO,
    CYKOOZ,
    ENV_VAR,
    PILLOW,
    select,
)
from unde_dagster.collages.resampler import active as active_resampler  # noqa: E402

SETS: dict[str, list[tuple[int, int]]] = {
    "equal": [(1920, 2880)] * 5,
    "mixed": [(1920, 2880), (1500, 2250), (1024, 1536), (1920, 2560), (800, 1200)],
}


def make_photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: colour gradients plus soft noise, ~1 MB at 1920x2880, q90 4:2:0."""
    rnd = random.Random(seed)
    lin = Image.linear_gradient("L").resize((width, height))
    rad = Image.radial_gradient("L").resize((width, height)).rotate(rnd.uniform(-20, 20))
    noise = Image.effect_noise((width // 2, height // 2), rnd.uniform(30, 50))
    noise = noise.resize((width, height), Image.Resampling.BILINEAR)
    img = Image.merge("RGB", (lin, rad, Image.blend(lin, rad, rnd.random())))
    img = Image.blend(img, Image.merge("RGB", (noise, noise, noise)), 0.25)
    buf = BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def generate(directory: Path) -> None:
    for name, sizes in SETS.items():
        for i, (w, h) in enumerate(sizes):
            (directory / f"{name}-{i}.jpg").write_bytes(make_photo(w, h, seed=i * 7 + len(name)))


def load_set(directory: Path, name: str) -> list[bytes]:
    return [(directory / f"{name}-{i}.jpg").read_bytes() for i in range(len(SETS[name]))]


# --- the functions timed (module level so worker processes can import them) ---------------


def run_seed(photos: list[bytes]) -> int:
    from bench.seed_collage import seed_collage

    return len(seed_collage(photos))


def run_ours(photos: list[bytes]) -> int:
    from unde_dagster.collages.pool import _worker  # what CollagePool runs per SKU

    return len(_worker(photos, 95).jpeg)


def _decode_all(photos: list[bytes]) -> None:
    for data in photos:
        with Image.open(BytesIO(data)) as img:
            img.load()


def _resize_needed(photos: list[bytes], ours: bool = False) -> None:
    from unde_dagster.collages.compose import collage_geometry, lanczos3_upscale

    with_sizes = []
    for data in photos:
        with Image.open(BytesIO(data)) as img:
            with_sizes.append(img.size)
    targets, _, _ = collage_geometry(with_sizes)
    for data, src, dst in zip(photos, with_sizes, targets, strict=True):
        if src != dst:
            with Image.open(BytesIO(data)) as img:
                img.load()
                if ours:
                    lanczos3_upscale(img, dst)
                else:
                    img.resize(dst, Image.Resampling.LANCZOS)


_OUTPUT: Image.Image | None = None


def _output_pixels(photos: list[bytes]) -> Image.Image:
    """The collage's pixels, decoded once outside the timed region."""
    global _OUTPUT
    if _OUTPUT is None:
        from unde_dagster.collages.compose import build_collage

        _OUTPUT = Image.open(BytesIO(build_collage(photos).jpeg))
        _OUTPUT.load()
    return _OUTPUT


def run_codec(photos: list[bytes]) -> int:
    out = _output_pixels(photos)
    _decode_all(photos)
    buf = BytesIO()
    out.save(buf, "JPEG", quality=95, subsampling=0)
    return buf.tell()


def run_floor(photos: list[bytes], ours: bool = False) -> int:
    """Codec plus resizes, timed in the same sequence (decode of resized ones counted once)."""
    out = _output_pixels(photos)
    _decode_all(photos)
    _resize_needed(photos, ours)  # re-decodes the resized photos: subtracted in child_single
    buf = BytesIO()
    out.save(buf, "JPEG", quality=95, subsampling=0)
    return buf.tell()


def run_rfloor(photos: list[bytes]) -> int:
    return run_floor(photos, ours=True)


FUNCS = {"seed": run_seed, "ours": run_ours, "codec": run_codec, "floor": run_floor,
         "rfloor": run_rfloor}


def pixel_diff(photos: list[bytes], resampler: str) -> tuple[float, int, int]:
    """(mean, max, 99.9th percentile) of |ours - seed| over every channel, both decoded."""
    from bench.seed_collage import seed_collage
    from unde_dagster.collages.compose import build_collage

    ours_jpeg = build_collage(photos, resampler=select(resampler)).jpeg
    with Image.open(BytesIO(ours_jpeg)) as ours, \
            Image.open(BytesIO(seed_collage(photos))) as seed:
        assert ours.size == seed.size, (ours.size, seed.size)
        diff = ImageChops.difference(ours.convert("RGB"), seed.convert("RGB"))
    hist = [0] * 256
    for band in diff.split():
        for level, count in enumerate(band.histogram()):
            hist[level] += count
    total, seen, p999 = sum(hist), 0, 0
    for level, count in enumerate(hist):
        seen += count
        if seen >= 0.999 * total:
            p999 = level
            break
    mean = sum(level * count for level, count in enumerate(hist)) / total
    return mean, max(level for level, count in enumerate(hist) if count), p999


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent across fork+exec, which would charge the bench driver's memory to every child."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_single(variant: str, set_name: str, directory: Path, runs: int) -> dict[str, Any]:
    photos = load_set(directory, set_name)
    variant = split_variant(variant)[0]
    fn = FUNCS[variant]
    if variant == "ours":  # as in CollagePool workers
        configure_worker()
    if variant in ("codec", "floor", "rfloor"):
        _output_pixels(photos)
    base = _peak_rss_mib()
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(photos)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    ran = active_resampler().name  # what UNDE_COLLAGE_RESAMPLER gave this process
    if variant in ("floor", "rfloor"):  # remove the double decode of resized photos
        tallest = max(h for _, h in SETS[set_name])
        resized = [p for p, s in zip(photos, SETS[set_name], strict=True) if s[1] != tallest]
        for i in range(runs):
            start = time.perf_counter()
            _decode_all(resized)
            times[i] -= time.perf_counter() - start
    return {"times": [t * 1000 for t in times], "cpu": [t * 1000 for t in cpu],
            "rss": _peak_rss_mib(), "base": base, "resampler": ran}


def child_pool(variant: str, set_name: str, directory: Path, skus: int) -> dict[str, float]:
    photos = load_set(directory, set_name)
    variant = split_variant(variant)[0]
    fn = FUNCS[variant]
    ctx = multiprocessing.get_context("forkserver")
    init = configure_worker if variant == "ours" else None
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=init) as pool:
        list(pool.map(fn, [photos, photos]))  # warm up both workers
        start = time.perf_counter()
        list(pool.map(fn, [photos] * skus))
        elapsed = time.perf_counter() - start
    return {"sku_s": skus / elapsed}


def spawn(args: list[str], resampler: str) -> dict[str, Any]:
    """Run ``--child args`` in a fresh interpreter (and its pool) with ``resampler`` forced."""
    env = {**os.environ, ENV_VAR: resampler}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def resamplers_to_run(spec: str) -> list[str]:
    """``all`` = every resampler installed here; else a comma list (``auto`` resolved)."""
    if spec == "all":  # auto is cykooz where it is installed
        return list(dict.fromkeys([select(AUTO).name, PILLOW]))
    return list(dict.fromkeys(select(name).name for name in spec.split(",")))


def split_variant(variant: str) -> tuple[str, str]:
    """``ours[pillow]`` -> (``ours``, ``pillow``); the other variants run as ``auto``."""
    name, _, rest = variant.partition("[")
    return name, rest.rstrip("]") or "auto"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Collage benchmark: seed algorithm vs ours vs the JPEG codec bound. "
        "Prints ms/SKU (1 process, median), SKUs/s (2 processes) and peak RSS per variant, "
        "each measured in a fresh subprocess on the same generated photo-like JPEGs."
    )
    parser.add_argument("--runs", type=int, default=3,
                        help="single-process repeats per subprocess (median over all rounds)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of fresh subprocesses per variant")
    parser.add_argument("--skus", type=int, default=8, help="SKUs timed per 2-process run")
    parser.add_argument("--sets", default="equal,mixed", help="comma list of: equal, mixed")
    parser.add_argument("--resamplers", default="all",
                        help="comma list of cykooz, pillow, auto; all (default): every "
                        "resampler installed here, each as its own ours[...] row")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        mode, variant, set_name, directory, n = args.child
        if mode == "single":
            res = child_single(variant, set_name, Path(directory), int(n))
        else:
            res = child_pool(variant, set_name, Path(directory), int(n))
        print(json.dumps(res))
        return

    resamplers = resamplers_to_run(args.resamplers)
    print(f"Pillow {Image.__version__}, {os.cpu_count()} CPUs, load avg "
          f"{os.getloadavg()[0]:.2f}, rounds={args.rounds} x runs={args.runs}, "
          f"skus={args.skus} per 2-process run")
    print(f"resamplers: {', '.join(describe(name) for name in resamplers)}; "
          f"{ENV_VAR}=auto picks {select(AUTO).name} here")
    with tempfile.TemporaryDirectory(prefix="collage-bench-") as tmp:
        directory = Path(tmp)
        generate(directory)
        for set_name in args.sets.split(","):
            run_set(set_name, directory, resamplers, args)


def describe(resampler: str) -> str:
    if resampler == CYKOOZ:
        from importlib.metadata import version

        return f"cykooz (cykooz.resizer {version('cykooz.resizer')})"
    return f"pillow (Pillow {Image.__version__} LANCZOS)"


def run_set(
    set_name: str, directory: Path, resamplers: list[str], args: argparse.Namespace
) -> None:
    tmp = str(directory)
    sizes = SETS[set_name]
    mb = sum(len(p) for p in load_set(directory, set_name)) / 2**20
    print(f"\n== {set_name}: {', '.join(f'{w}x{h}' for w, h in sizes)} "
          f"({mb:.1f} MiB of input JPEG)")
    print(f"{'variant':<14}{'ms/SKU':>10}{'best ms':>9}{'CPU ms':>8}{'SKU/s x2':>10}"
          f"{'peak RSS':>11}{'idle RSS':>10}")
    ours_rows = [f"ours[{r}]" for r in resamplers]
    variants = ["seed", *ours_rows, "codec"]
    if set_name != "equal":
        variants += ["floor"] + (["rfloor[cykooz]"] if CYKOOZ in resamplers else [])
    samples: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    rates: dict[str, list[float]] = {v: [] for v in ("seed", *ours_rows)}
    peaks: dict[str, tuple[float, float]] = {}
    # Rounds interleave the variants so background load hits them alike.
    for _ in range(args.rounds):
        for variant in variants:
            want = split_variant(variant)[1]
            res = spawn(["single", variant, set_name, tmp, str(args.runs)], want)
            if want != "auto" and res["resampler"] != want:
                raise SystemExit(f"{variant} ran {res['resampler']}, not {want}")
            samples[variant] += res["times"]
            cpu[variant] += res["cpu"]
            old = peaks.get(variant, (0.0, 0.0))
            peaks[variant] = (max(old[0], res["rss"]), max(old[1], res["base"]))
        for variant in rates:
            rates[variant].append(spawn(
                ["pool", variant, set_name, tmp, str(args.skus)], split_variant(variant)[1]
            )["sku_s"])
    rows: dict[str, dict[str, float]] = {}
    for variant in variants:
        row = {"ms": statistics.median(samples[variant]),
               "best": min(samples[variant]),
               "cpu": statistics.median(cpu[variant]),
               "rss": peaks[variant][0], "base": peaks[variant][1]}
        if variant in rates:
            row["sku_s"] = statistics.median(rates[variant])
        rows[variant] = row
        tput = f"{row['sku_s']:.2f}" if "sku_s" in row else "-"
        rss = f"{row['rss']:.0f} MiB" if variant in rates else "-"
        print(f"{variant:<14}{row['ms']:>10.0f}{row['best']:>9.0f}{row['cpu']:>8.0f}"
              f"{tput:>10}{rss:>11}{row['base']:>7.0f} MiB")
    seed, codec = rows["seed"], rows["codec"]
    for variant in ours_rows:
        ours = rows[variant]
        print(f"{variant} vs seed: {seed['ms'] / ours['ms']:.2f}x faster (1 proc), "
              f"{ours['sku_s'] / seed['sku_s']:.2f}x throughput (2 procs), "
              f"peak RSS {100 * ours['rss'] / seed['rss']:.0f}% of seed "
              f"({100 * (ours['rss'] - ours['base']) / (seed['rss'] - seed['base']):.0f}% "
              f"above idle)")
        print(f"{variant} vs codec bound: {ours['ms'] / codec['ms']:.2f}x (median), "
              f"{ours['best'] / codec['best']:.2f}x (best), {ours['cpu'] / codec['cpu']:.2f}x "
              "(CPU)")
        print(f"CPU time per SKU: seed / {variant} = {seed['cpu'] / ours['cpu']:.2f}x (what 2 "
              "processes on 2 idle cores would give; wall-clock rates suffer other load)")
    if len(ours_rows) == 2:
        fast, slow = rows[ours_rows[0]], rows[ours_rows[1]]
        print(f"{ours_rows[0]} vs {ours_rows[1]}: {slow['ms'] / fast['ms']:.2f}x faster "
              f"(1 proc), {fast['sku_s'] / slow['sku_s']:.2f}x throughput (2 procs), "
              f"{slow['cpu'] / fast['cpu']:.2f}x less CPU")
    if "floor" in rows:
        floor = rows["floor"]
        print(f"pixel-identical floor (codec + Pillow LANCZOS): {floor['ms']:.0f} ms -> "
              f"best possible speed-up over seed {seed['ms'] / floor['ms']:.2f}x")
        if "ours[pillow]" in rows:
            print(f"ours[pillow] is {rows['ours[pillow]']['ms'] / floor['ms']:.2f}x that floor")
        if "rfloor[cykooz]" in rows and "ours[cykooz]" in rows:
            rfloor = rows["rfloor[cykooz]"]
            print(f"cykooz floor (codec + cykooz Lanczos3): {rfloor['ms']:.0f} ms -> "
                  f"ours[cykooz] is {rows['ours[cykooz]']['ms'] / rfloor['ms']:.2f}x it")
    for resampler in resamplers:
        mean, worst, p999 = pixel_diff(load_set(directory, set_name), resampler)
        print(f"pixels vs seed, ours[{resampler}]: mean |diff| {mean:.3f}, max {worst}, "
              f"99.9th pct {p999} (levels of 255, all channels)")


if __name__ == "__main__":
    main()
