"""Photo-downloader throughput versus the politeness bound (plain script, not a test).

    .venv/bin/python bench/downloader_bench.py            # ~1.5-2 min
    .venv/bin/python bench/downloader_bench.py --skus 10  # quicker, noisier

Runs against the local CDN-behind-a-proxy emulator (``unde_local.emulators``) with an
injected per-request latency L, using the PRODUCTION politeness settings (10 slots,
0.5-2 s per-slot delay), so the figure that matters is achieved req/s against the bound

    bound = slots / (L_measured + mean delay 1.25 s)

where L_measured is the mean time a slot spends on its request (proxy + CDN + body).
Baselines in the same run: the seed's loop as written in catalog-infrastructure.md
(one photo at a time, ``Image.verify()``, no delay at all: faster than polite, since it
ignores its own documented 0.5-2 s delay), and the same loop with that documented delay.
Also prints the cost of ``verify()``, of a full-resolution decode and of the validator's
DCT-scaled decode.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unde_dagster.originals import (
    Fetched,
    FetchSettings,
    PhotoFetcher,
    SkuPhotos,
    SkuResult,
    download_skus,
    validate_photo,
    validate_with_preview,
)
from unde_dagster.originals.user_agents import random_user_agent
from unde_dagster.storage.thumbnails import original_thumbnail
from unde_local.emulators import Emulators
from unde_local.fixtures.catalog import photo_url


@dataclass
class Row:
    name: str
    latency_ms: int
    photos: int
    errors: int
    elapsed_s: float
    mean_request_s: float
    bound: float | None

    @property
    def rate(self) -> float:
        return self.photos / self.elapsed_s

    @property
    def run_bound(self) -> float | None:
        """Bound for this finite run: the first request of each slot has no delay
        before it, so a short run can beat the steady-state bound a little."""
        if self.bound is None:
            return None
        slots = 10 if self.name.startswith("ours") else 1
        k = -(-self.photos // slots)  # requests per slot
        return self.photos / (k * self.mean_request_s + (k - 1) * 1.25)


class TimingFetcher:
    """Wraps PhotoFetcher to time each request from slot acquisition to response."""

    def __init__(self, inner: PhotoFetcher) -> None:
        self.inner = inner
        self.clock = inner.clock
        self.durations: list[float] = []

    async def fetch(self, url: str, on_start: Callable[[], None] | None = None) -> Fetched:
        started: list[float] = []

        def mark() -> None:
            started.append(time.perf_counter())
            if on_start is not None:
                on_start()

        got = await self.inner.fetch(url, on_start=mark)
        self.durations.append(time.perf_counter() - started[0])
        return got


def make_skus(cdn: str, n_skus: int, tag: str) -> list[SkuPhotos]:
    skus = []
    for i in range(n_skus):
        model = f"{tag}{i:06d}"[-8:].rjust(8, "0")
        urls = [photo_url(cdn, "zara", model, "800", f"p{k}") for k in range(5)]
        skus.append(SkuPhotos(f"{model}-800", urls))
    return skus


async def run_ours(proxy: str, cdn: str, latency_ms: int, n_skus: int) -> Row:
    # production politeness numbers; the emulated CDN host is allowlisted as in the local stack
    settings = FetchSettings(proxy_url=proxy, host_allowlist=(urlsplit(cdn).hostname or "",))
    inner = PhotoFetcher(settings, rng=random.Random(latency_ms))
    timing = TimingFetcher(inner)
    errors = 0

    async def on_done(sku: SkuPhotos, result: SkuResult) -> None:
        nonlocal errors
        errors += 0 if result.ok else 1

    async with inner:
        summary = await download_skus(make_skus(cdn, n_skus, f"o{latency_ms}"), timing, on_done)
    mean_req = statistics.fmean(timing.durations)
    bound = settings.max_in_flight / (mean_req + (settings.delay_min_s + settings.delay_max_s) / 2)
    return Row("ours: 10 slots, per-slot delay", latency_ms, summary.photos_downloaded, errors,
               summary.elapsed_s, mean_req, bound)


async def run_seed(proxy: str, cdn: str, latency_ms: int, n_photos: int, delay: bool) -> Row:
    """The seed loop (catalog-infrastructure.md): one photo at a time, verify() only."""
    rng = random.Random(1)
    urls = [u.replace("{width}", "1920")
            for s in make_skus(cdn, (n_photos + 4) // 5, f"s{latency_ms}{int(delay)}")
            for u in s.original_image_urls][:n_photos]
    durations: list[float] = []
    errors = 0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for i, url in enumerate(urls):
            if delay and i:
                await asyncio.sleep(rng.uniform(0.5, 2.0))
            t = time.perf_counter()
            try:
                async with session.get(url, proxy=proxy, timeout=aiohttp.ClientTimeout(total=30),
                                       headers={"User-Agent": random_user_agent(rng)}) as resp:
                    data = await resp.read()
                Image.open(io.BytesIO(data)).verify()
            except Exception:
                errors += 1
            durations.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    name = "seed loop + its 0.5-2 s delay" if delay else "seed loop as written (no delay)"
    bound = 1 / (statistics.fmean(durations) + 1.25) if delay else None
    return Row(name, latency_ms, len(urls), errors, elapsed, statistics.fmean(durations), bound)


def validation_cost(emu: Emulators) -> None:
    data = emu.photo_pool.get(0)
    w, h = Image.open(io.BytesIO(data)).size

    def per_call(fn: Callable[[], object], n: int = 10) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n * 1000

    verify_ms = per_call(lambda: Image.open(io.BytesIO(data)).verify())
    def full_decode() -> None:
        with Image.open(io.BytesIO(data)) as img:
            img.load()

    full_ms = per_call(full_decode)
    validate_ms = per_call(lambda: validate_photo(data))
    apart_ms = per_call(lambda: (validate_photo(data), original_thumbnail(data)))
    together_ms = per_call(lambda: validate_with_preview(data))
    cut = data[: len(data) // 2]
    try:
        Image.open(io.BytesIO(cut)).verify()
        verify_truncated = "passes (misses it)"
    except Exception:
        verify_truncated = "rejects"
    print(f"\nValidation of one {w}x{h} JPEG ({len(data) / 1024:.0f} KiB), one core:")
    print(f"  Image.verify():            {verify_ms:7.2f} ms; on the same file cut in half it "
          f"{verify_truncated}")
    print(f"  full-resolution load():    {full_ms:7.2f} ms (baseline: the validator before "
          f"its DCT-scaled decode)")
    print(f"  validate_photo:            {validate_ms:7.2f} ms; rejects the cut file as "
          f"truncated; at the bound of ~8 req/s that is "
          f"{validate_ms * 8 / 10:.0f}% of one core")
    print(f"  validate_with_preview:     {together_ms:7.2f} ms: the same decode also gives the "
          f"preview (baseline: validate_photo + original_thumbnail, {apart_ms:.2f} ms)")


def print_table(rows: list[Row]) -> None:
    print(f"\n{'run':34} {'L ms':>5} {'photos':>6} {'err':>4} {'time s':>7} "
          f"{'req ms':>7} {'req/s':>6} {'bound':>6} {'% bound':>8} {'% run bound':>11}")
    for r in rows:
        bound = f"{r.bound:6.2f}" if r.bound else "     -"
        pct = f"{100 * r.rate / r.bound:7.1f}%" if r.bound else "       -"
        rb = f"{100 * r.rate / r.run_bound:10.1f}%" if r.run_bound else "          -"
        print(f"{r.name:34} {r.latency_ms:5d} {r.photos:6d} {r.errors:4d} {r.elapsed_s:7.2f} "
              f"{r.mean_request_s * 1000:7.1f} {r.rate:6.2f} {bound} {pct} {rb}")


async def bench(emu: Emulators, latencies: list[int], n_skus: int, seed_photos: int) -> None:
    assert emu.urls is not None
    proxy, cdn = emu.urls.proxy_url, emu.urls.cdn_base_url
    injector = emu.faults["cdn_proxy"]
    rows: list[Row] = []
    for ms in latencies:
        injector.set_latency(ms)
        rows.append(await run_ours(proxy, cdn, ms, n_skus))
        print_table(rows[-1:])
        rows.append(await run_seed(proxy, cdn, ms, seed_photos * 3, delay=False))
        print_table(rows[-1:])
        rows.append(await run_seed(proxy, cdn, ms, seed_photos, delay=True))
        print_table(rows[-1:])
    injector.set_latency(0)
    print("\n== Summary (bound = 10 slots / (mean request time + 1.25 s mean delay);"
          " seed+delay bound = 1 / (request + 1.25 s)) ==")
    print_table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latencies", default="50,300", help="injected CDN latency, ms")
    ap.add_argument("--skus", type=int, default=30, help="SKUs (5 photos each) for our run")
    ap.add_argument("--seed-photos", type=int, default=10, help="photos for seed+delay run")
    args = ap.parse_args()
    latencies = [int(x) for x in args.latencies.split(",")]
    t0 = time.perf_counter()
    emu = Emulators(items_per_brand=5)
    emu.start()
    try:
        for i in range(len(emu.photo_pool)):  # build the fixture photos before timing
            emu.photo_pool.get(i)
        validation_cost(emu)
        asyncio.run(bench(emu, latencies, args.skus, args.seed_photos))
    finally:
        emu.stop()
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
