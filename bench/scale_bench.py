"""A whole brand end to end on the local stack, at scale: what grows faster than the work.

Plain script, printed figures (not a test). One brand (zara, the pilot brand, so every SKU
goes to the Ximilar emulator too) of exactly N colour SKUs runs `brand_catalog_pipeline`
(catalog -> originals -> collages -> Ximilar) in this process (`execute_in_process`, the
run worker is this process) on a fresh local stack that runs in a child process of its own
(PostgreSQL, the S3-protocol store and the emulators), so the memory of each is told apart.

Photos are small by default (every CDN photo 200x300: the downloader refuses a side under
200 px), so the cost under test is orchestration, the database and the object store, not
the JPEG codec; `--full-size` serves the emulator's normal 1920x2880-class photos.

Printed: per stage wall time, SKUs/s against that stage's bound (downloads: 10 slots /
(mean slot delay + measured fetch time) at the local profile's delays; collages: the codec
throughput of `unde_dagster.collages.compose.build_collage` measured here on a few SKUs'
photos outside Dagster, times the pool's workers; Ximilar: 10 req/s x 10 records per
request / records per SKU); orchestration overhead (run wall time minus the stages' own work:
the batches' `scraper_logs` started_at..completed_at); peak RSS of every process; Dagster
event-log rows and bytes per SKU; DB time per claimed batch (`claim_batch` timed by wrapping
it in this process; `pg_stat_statements` when the server has it loaded); sequential scans of
`raw_products` per SKU (pg_stat_user_tables), and EXPLAIN ANALYZE of the claim query with a
whole brand queued.

Run:
  .venv/bin/python bench/scale_bench.py --quick                 # 200 SKUs + incremental, smoke
  .venv/bin/python bench/scale_bench.py                         # 10,000 SKUs, small photos
  .venv/bin/python bench/scale_bench.py --compare 1000,10000    # baseline beside candidate
  .venv/bin/python bench/scale_bench.py --full-size --skus 2000
  .venv/bin/python bench/scale_bench.py --incremental           # + the next day's catalog
  .venv/bin/python bench/scale_bench.py --ui                    # + the UI's pages timed after
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BRAND = "zara"
SMALL_PHOTOS = "200x300,200x300,200x300,200x300"  # 4 distinct pictures, one size
XIMILAR_RATE = 10.0  # req/s (XimilarResource default; the stack does not set it)
RECORDS_PER_REQUEST = 10
SLOTS = 10  # PhotoDownloader.max_in_flight
ENV_FILE = "bench-env.json"


# --- the stack, in a child process ----------------------------------------------------

def serve_stack(root: Path) -> None:
    """Child mode: start the local stack here, say where it is, wait for SIGTERM."""
    from unde_local.stack import LocalStack, StackSettings, database_url_from_env

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = LocalStack(StackSettings(root=root, items_per_brand=1,
                                     database_url=database_url_from_env()))
    try:
        env = stack.start()
        tmp = root / (ENV_FILE + ".tmp")
        tmp.write_text(json.dumps({"env": env, "pid": os.getpid()}))
        tmp.replace(root / ENV_FILE)
        stop.wait()
    finally:
        stack.stop()


class StackProcess:
    def __init__(self, root: Path, photo_size: str | None) -> None:
        self.root = root
        env = dict(os.environ)
        env.pop("UNDE_LOCAL_PHOTO_SIZE", None)
        if photo_size:
            env["UNDE_LOCAL_PHOTO_SIZE"] = photo_size
        self.log = open(root / "stack.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-stack", str(root)],
            stdout=self.log, stderr=self.log, env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 240
        while not (root / ENV_FILE).exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"the stack did not come up; see {root / 'stack.log'}")
            time.sleep(0.3)
        info = json.loads((root / ENV_FILE).read_text())
        self.env: dict[str, str] = info["env"]
        self.pid: int = info["pid"]

    def postmaster_pid(self) -> int | None:
        for path in glob.glob(str(self.root / "pg" / "**" / "postmaster.pid"), recursive=True):
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(Path(path).read_text().split()[0])
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# --- memory: /proc sampled while the runs go ------------------------------------------

def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssShmem"):
                out[key] = int(value.split()[0])  # kB
    return out


def _title(pid: int) -> str:
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(a.decode(errors="replace") for a in argv if a)[:70]
    return ""


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    return None


def _process_table() -> dict[int, tuple[int, str]]:
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            table[int(entry)] = (ppid, comm)
    return table


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Group:
    peak_per_pid: dict[int, int] = field(default_factory=dict)  # VmHWM kB
    comms: Counter[str] = field(default_factory=Counter)
    peak_sum_rss: int = 0  # kB, sum of VmRSS at one sample
    peak_sum_anon: int = 0  # kB, sum of RssAnon at one sample (shared memory counted once)
    peak_shmem: int = 0
    peak_anon_one: int = 0  # kB, the largest RssAnon (private memory) of one process
    peak_anon_who: str = ""  # that process's title (PostgreSQL names the backend's job)
    cpu_first: dict[int, float] = field(default_factory=dict)  # utime+stime s, first seen
    cpu_last: dict[int, float] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return sum(v - self.cpu_first.get(pid, 0.0) for pid, v in self.cpu_last.items())


RUN_WORKER_CHILDREN = "run worker's children (collage pool, compute-log tail)"
CATALOG_BUILDER = "bench's catalog builder (not the product)"
NOT_THE_PRODUCT = (CATALOG_BUILDER,)


class MemorySampler(threading.Thread):
    """Peak RSS per process group: psutil is not installed, so /proc/<pid>/status
    (VmHWM of each process while it lives, VmRSS/RssAnon summed per sample)."""

    def __init__(self, stack: StackProcess, every_s: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack, self.every_s = stack, every_s
        self.groups: dict[str, Group] = defaultdict(Group)
        self._halt = threading.Event()
        self.worker_rss: list[tuple[float, int]] = []  # (epoch s, VmRSS kB) of this process
        self.cpu_series: list[tuple[float, dict[str, float]]] = []  # (epoch s, CPU s per group)
        self._samples = 0
        self._lock = threading.Lock()

    def groups_now(self) -> dict[str, list[int]]:
        table = _process_table()
        me = os.getpid()
        stack_children = _descendants(self.stack.pid, table)
        pm = self.stack.postmaster_pid()
        pg = [pm, *_descendants(pm, table)] if pm and pm in table else []
        stack_children = [p for p in stack_children if p not in pg]
        mine = [p for p in _descendants(me, table) if p not in stack_children and p not in pg
                and p != self.stack.pid]
        builders = [p for p in mine if p in CATALOG_BUILDERS]
        named = {
            "bench process (run worker, in-process run)": [me],
            RUN_WORKER_CHILDREN: [p for p in mine if p not in CATALOG_BUILDERS],
            CATALOG_BUILDER: builders,
            "stack process (emulators + in-process S3 server if any)": [self.stack.pid],
            "stack child processes (object-store server(s) etc.)": stack_children,
            "PostgreSQL (postmaster + backends)": pg,
        }
        self._comm = {p: table[p][1] for ps in named.values() for p in ps if p in table}
        return named

    def sample(self) -> None:
        with self._lock:
            self._sample()
            self._samples += 1

    def cpu_totals(self) -> dict[str, float]:
        with self._lock:
            self._sample()
            return {name: g.cpu_s for name, g in self.groups.items()}

    def worker_peak(self, start: float, end: float) -> int:
        """Peak VmRSS (kB) of the run worker (this process) sampled within [start, end]."""
        return max((kb for t, kb in self.worker_rss if start <= t <= end), default=0)

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each group used between the samples nearest to [start, end]."""
        inside = [c for t, c in self.cpu_series if start - self.every_s <= t <= end + self.every_s]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        return {name: last[name] - first.get(name, 0.0) for name in last}

    def _sample(self) -> None:
        now = time.time()
        self.worker_rss.append((now, _status(os.getpid()).get("VmRSS", 0)))
        for name, pids in self.groups_now().items():
            g = self.groups[name]
            total_rss = total_anon = shmem = 0
            for pid in pids:
                st = _status(pid)
                cpu = _cpu_s(pid)
                if not st or cpu is None:
                    continue
                if pid not in g.cpu_last:  # seen at the first sample: count from here
                    g.cpu_first[pid] = cpu if self._samples == 0 else 0.0
                g.cpu_last[pid] = cpu
                if pid not in g.peak_per_pid:
                    g.comms[self._comm.get(pid, "?")] += 1
                g.peak_per_pid[pid] = max(g.peak_per_pid.get(pid, 0), st.get("VmHWM", 0))
                total_rss += st.get("VmRSS", 0)
                total_anon += st.get("RssAnon", 0)
                if st.get("RssAnon", 0) > g.peak_anon_one:
                    g.peak_anon_one = st["RssAnon"]
                    g.peak_anon_who = _title(pid)
                shmem = max(shmem, st.get("RssShmem", 0))
            g.peak_sum_rss = max(g.peak_sum_rss, total_rss)
            g.peak_sum_anon = max(g.peak_sum_anon, total_anon + shmem)
            g.peak_shmem = max(g.peak_shmem, shmem)
        self.cpu_series.append((now, {name: g.cpu_s for name, g in self.groups.items()}))

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            with contextlib.suppress(Exception):
                self.sample()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)
        self.sample()


# --- the catalog ------------------------------------------------------------------------

def build_catalog(n_skus: int, cdn_base_url: str) -> list[dict[str, Any]]:
    """Exactly `n_skus` colour SKUs of the fixture generator's zara items."""
    from unde_local.fixtures.catalog import generate_item

    items: list[dict[str, Any]] = []
    total = index = 0
    while total < n_skus:
        item = generate_item(BRAND, index, cdn_base_url)
        index += 1
        variants = item["colorsSizesImagesJSON"][: n_skus - total]
        item["colorsSizesImagesJSON"] = variants
        item["colors"] = ", ".join(v["name"] for v in variants)
        items.append(item)
        total += len(variants)
    return items


def next_day(items: list[dict[str, Any]], changed: float, gone: float,
             seed: int = 1) -> tuple[list[dict[str, Any]], int, int]:
    """The next day's catalog: `changed` of the SKUs with new photo URLs, `gone` removed."""
    rng = random.Random(seed)
    items = json.loads(json.dumps(items))
    skus = [(i, v["id"]) for i, item in enumerate(items) for v in item["colorsSizesImagesJSON"]]
    rng.shuffle(skus)
    n_gone, n_changed = round(len(skus) * gone), round(len(skus) * changed)
    gone_set = set(skus[:n_gone])
    changed_set = set(skus[n_gone: n_gone + n_changed])
    out = []
    for i, item in enumerate(items):
        kept = []
        for v in item["colorsSizesImagesJSON"]:
            if (i, v["id"]) in gone_set:
                continue
            if (i, v["id"]) in changed_set:
                v["xmedia"] = [u.replace("/photos/2026/V/", "/photos/2026/W/") for u in v["xmedia"]]
            kept.append(v)
        if kept:
            item["colorsSizesImagesJSON"] = kept
            item["colors"] = ", ".join(v["name"] for v in kept)
            out.append(item)
    return out, n_changed, n_gone


def put_catalog(apify_url: str, items: list[dict[str, Any]]) -> None:
    import requests

    r = requests.put(f"{apify_url}/_emulator/apify/catalog/{BRAND}", json=items, timeout=120)
    r.raise_for_status()


def make_catalog(n_skus: int, cdn_base_url: str, apify_url: str,
                 day2: tuple[float, float] | None = None) -> tuple[list[list[str]], int, int, int]:
    """Build the brand's catalog (the next day's with `day2` = (changed, gone)), send it to
    the Apify emulator; return (photo URLs per SKU, items, SKUs changed, SKUs gone)."""
    items = build_catalog(n_skus, cdn_base_url)
    n_changed = n_gone = 0
    if day2 is not None:
        items, n_changed, n_gone = next_day(items, *day2)
    put_catalog(apify_url, items)
    return photo_urls(items), len(items), n_changed, n_gone


CATALOG_BUILDERS: set[int] = set()
"""Pids of `catalog_elsewhere`'s children: the bench's, measured apart from the pipeline's."""


def _make_catalog_into(pipe: Any, *args: Any) -> None:
    try:
        pipe.send((make_catalog(*args), None))
    except Exception as exc:
        pipe.send((None, f"{type(exc).__name__}: {exc}"))


def catalog_elsewhere(*args: Any) -> tuple[list[list[str]], int, int, int]:
    """`make_catalog` in a child process: the bench process is the run worker, whose memory
    is measured, so it must not hold the brand's catalog (tens of MB at 10,000 SKUs). The
    child is in `CATALOG_BUILDERS`, so the sampler does not count it as the run worker's."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_make_catalog_into, args=(send, *args), name="catalog-builder")
    child.start()
    assert child.pid is not None
    CATALOG_BUILDERS.add(child.pid)
    try:
        result, error = receive.recv()
    finally:
        child.join()
    if error:
        raise RuntimeError(f"building the catalog failed: {error}")
    return result


# --- bounds measured outside Dagster ----------------------------------------------------

def photo_urls(items: list[dict[str, Any]]) -> list[list[str]]:
    return [[u.replace("{width}", "1920") for u in v["xmedia"][:5]]
            for item in items for v in item["colorsSizesImagesJSON"]]


def measure_fetch(proxy_url: str, skus: list[list[str]], n_skus: int = 12
                  ) -> tuple[float, list[list[bytes]]]:
    """Mean time of one photo request through the proxy (sequential), and the bytes.

    Timed on a second pass: the first one makes the emulator draw its photo pool (cached on
    disk after the first bench on a machine), which the run mostly does not pay for."""
    import requests

    session = requests.Session()
    session.proxies = {"http": proxy_url, "https": proxy_url}
    times, photos = [], []
    for timed in (False, True):
        for urls in skus[:n_skus]:
            sku = []
            for url in urls:
                t0 = time.perf_counter()
                r = session.get(url, timeout=60)
                if timed:
                    times.append(time.perf_counter() - t0)
                r.raise_for_status()
                sku.append(r.content)
            photos.append(sku)
    return statistics.fmean(times), photos[len(photos) // 2:]


def measure_s3(env: dict[str, str], photo: bytes, n: int = 30) -> tuple[float, float]:
    """Mean seconds of one boto3 PUT and one GET of a photo-sized object on the stack's store
    (what each SKU costs the stages beside the fetch and the codec)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["S3_ACCESS_KEY"],
                      aws_secret_access_key=env["S3_SECRET_KEY"])
    puts, gets = [], []
    for i in range(n):
        key = f"bench-scale/{i}.jpg"
        t0 = time.perf_counter()
        s3.put_object(Bucket=env["S3_BUCKET"], Key=key, Body=photo, ContentType="image/jpeg")
        t1 = time.perf_counter()
        s3.get_object(Bucket=env["S3_BUCKET"], Key=key)["Body"].read()
        puts.append(t1 - t0)
        gets.append(time.perf_counter() - t1)
    for i in range(n):
        s3.delete_object(Bucket=env["S3_BUCKET"], Key=f"bench-scale/{i}.jpg")
    return statistics.fmean(puts[3:]), statistics.fmean(gets[3:])


def measure_codec(photos: list[list[bytes]], rounds: int = 3) -> float:
    """Seconds per SKU of build_collage in this process, median of `rounds` passes."""
    from unde_dagster.collages.compose import build_collage

    per_pass = []
    build_collage(photos[0], quality=95)  # warm-up
    for _ in range(rounds):
        t0 = time.perf_counter()
        for sku in photos:
            build_collage(sku, quality=95)
        per_pass.append((time.perf_counter() - t0) / len(photos))
    return statistics.median(per_pass)


# --- timing claim_batch (monkeypatched in this process only) ----------------------------

CLAIMS: list[tuple[str, float, int]] = []  # (stage, seconds, rows)
RELEASES: list[tuple[str, float]] = []


def patch_claims() -> None:
    import unde_dagster.db.claims as claims
    import unde_dagster.defs.image_stages as stages

    if getattr(stages.claim_batch, "_bench_timed", False):
        return
    claim, release = stages.claim_batch, claims.release_expired

    def timed_claim(conn: Any, queue: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        rows = claim(conn, queue, **kw)
        CLAIMS.append((queue.stage, time.perf_counter() - t0, len(rows)))
        return rows

    def timed_release(conn: Any, queue: Any, brand: str) -> Any:
        t0 = time.perf_counter()
        out = release(conn, queue, brand)
        RELEASES.append((queue.stage, time.perf_counter() - t0))
        return out

    import unde_dagster.ximilar.store as xstore

    xclaim = xstore.claim

    def timed_xclaim(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        rows = xclaim(*a, **kw)
        CLAIMS.append(("ximilar", time.perf_counter() - t0, len(rows)))
        return rows

    timed_claim._bench_timed = True  # type: ignore[attr-defined]
    stages.claim_batch = timed_claim
    claims.release_expired = timed_release
    xstore.claim = timed_xclaim


# --- one pipeline run -------------------------------------------------------------------

RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": {
    # One run drains the whole brand (default 25 batches per run = 5,000 downloads, 2,500
    # collages: a 10,000-SKU brand would otherwise be finished by the work sensors' runs).
    "product_originals": {"config": {"max_batches": 1_000_000}},
    "product_collages": {"config": {"max_batches": 1_000_000}},
}}

STAGES = (("raw_products", "catalog"), ("product_originals", "downloads"),
          ("product_collages", "collages"), ("ximilar_index", "ximilar"))
LOG_STAGE = {f"apify_{BRAND}": "catalog", "photo_downloader": "downloads",
             "photo_downloader_retry": "downloads", "collage_worker": "collages",
             "collage_worker_retry": "collages", "ximilar_sync": "ximilar",
             "ximilar_retry": "ximilar"}


def table_stats(conn: Any) -> dict[str, tuple[int, ...]]:
    """Per table: seq scans, rows they read, index scans, rows updated (HOT of them)."""
    rows = conn.execute(
        "SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), n_tup_upd, "
        "n_tup_hot_upd FROM pg_stat_user_tables"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def pg_statements(conn: Any) -> list[tuple[str, int, float]] | None:
    try:
        return conn.execute(
            "SELECT query, calls, total_exec_time FROM pg_stat_statements "
            "ORDER BY total_exec_time DESC LIMIT 8").fetchall()
    except Exception:
        return None


@dataclass
class RunFigures:
    label: str
    skus: int
    wall_s: float
    success: bool
    run_id: str
    steps: dict[str, float]
    logs: dict[str, dict[str, float]]
    claims: dict[str, list[tuple[float, int]]]
    releases: dict[str, list[float]]
    events: list[tuple[str, int, int, int]]  # type, rows, bytes, max bytes
    status: dict[str, int]
    scans: dict[str, tuple[int, ...]]
    statements: list[tuple[str, int, float]] | None
    ximilar_skus: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    step_worker_kb: dict[str, int] = field(default_factory=dict)  # peak run-worker RSS
    step_cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # CPU s per group

    @property
    def event_rows(self) -> int:
        return sum(e[1] for e in self.events)

    @property
    def event_bytes(self) -> int:
        return sum(e[2] for e in self.events)


def run_pipeline(label: str, n_skus: int, instance: Any, env: dict[str, str],
                 sampler: MemorySampler) -> RunFigures:
    import dagster as dg
    import psycopg

    from unde_dagster.definitions import defs
    from unde_dagster.defs.pipeline import brand_catalog_pipeline

    job = defs.resolve_job_def(brand_catalog_pipeline.name)
    CLAIMS.clear()
    RELEASES.clear()
    with psycopg.connect(env["STAGING_DB_URL"], autocommit=True) as conn:
        before = table_stats(conn)
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_stat_statements_reset()")
    cpu0 = sampler.cpu_totals()
    t0 = time.monotonic()
    result = job.execute_in_process(partition_key=BRAND, instance=instance,
                                    run_config=RUN_CONFIG, raise_on_error=False)
    wall = time.monotonic() - t0
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in sampler.cpu_totals().items()}
    run_id = result.run_id

    steps: dict[str, float] = {}
    starts: dict[str, float] = {}
    step_worker_kb: dict[str, int] = {}
    step_cpu: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            starts[ev.step_key] = entry.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in starts:
            steps[ev.step_key] = entry.timestamp - starts[ev.step_key]
            step_worker_kb[ev.step_key] = sampler.worker_peak(starts[ev.step_key],
                                                              entry.timestamp)
            step_cpu[ev.step_key] = sampler.cpu_between(starts[ev.step_key], entry.timestamp)

    with psycopg.connect(env["STAGING_DB_URL"], autocommit=True) as conn:
        logs: dict[str, dict[str, float]] = {}
        for name, n, work, rounded, fetched, errors in conn.execute(
            "SELECT scraper_name, count(*), "
            "COALESCE(sum(EXTRACT(EPOCH FROM completed_at - started_at)), 0), "
            "COALESCE(sum(duration_seconds), 0), COALESCE(sum(records_fetched), 0), "
            "COALESCE(sum(records_errors), 0) FROM scraper_logs WHERE run_id = %s GROUP BY 1",
            (run_id,),
        ).fetchall():
            stage = LOG_STAGE.get(name, name)
            d = logs.setdefault(stage, Counter())
            d["batches"] += n
            d["work_s"] += float(work)
            d["duration_seconds"] += float(rounded)
            d["fetched"] += fetched
            d["errors"] += errors
        status = dict(conn.execute(
            "SELECT image_status, count(*) FROM raw_products WHERE brand = %s GROUP BY 1",
            (BRAND,)).fetchall())
        after = table_stats(conn)
        statements = pg_statements(conn)
        ximilar_skus = conn.execute(
            "SELECT count(*) FROM raw_products WHERE brand = %s AND ximilar_status = 'synced'",
            (BRAND,)).fetchone()[0]
    scans = {t: tuple(a - b for a, b in zip(after[t], before.get(t, (0,) * 5), strict=True))
             for t in after}
    with psycopg.connect(env["DAGSTER_PG_URL"], autocommit=True) as conn:
        events = conn.execute(
            "SELECT COALESCE(dagster_event_type, '(log message)'), count(*), "
            "sum(octet_length(event)), max(octet_length(event)) FROM event_logs "
            "WHERE run_id = %s GROUP BY 1 ORDER BY 3 DESC", (run_id,)).fetchall()
    claims: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for stage, secs, rows in CLAIMS:
        claims[stage].append((secs, rows))
    releases: dict[str, list[float]] = defaultdict(list)
    for stage, secs in RELEASES:
        releases[stage].append(secs)
    del dg
    return RunFigures(label, n_skus, wall, result.success, run_id, steps, logs, claims,
                      releases, [tuple(e) for e in events], status, scans, statements,
                      ximilar_skus, cpu, step_worker_kb, step_cpu)


# --- EXPLAIN of the claim query with the whole brand queued -----------------------------

CLAIM_PICK = """
    SELECT id FROM raw_products
     WHERE brand = %(brand)s AND image_status = %(ready)s
       AND (claimed_until IS NULL OR claimed_until < NOW())
     ORDER BY id LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
"""


def explain_claim(staging_url: str, ready: str = "pending", limit: int = 200) -> list[str]:
    """The claim's SELECT (db/claims.py claim_batch) with every SKU of the brand back in
    `ready`, inside a transaction that is rolled back."""
    import psycopg

    with psycopg.connect(staging_url) as conn:
        conn.execute("SET LOCAL unde.allow_backward = 'on'")
        conn.execute("UPDATE raw_products SET image_status = %s WHERE brand = %s",
                     (ready, BRAND))
        conn.execute("ANALYZE raw_products")
        plan = [r[0] for r in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + CLAIM_PICK,
            {"brand": BRAND, "ready": ready, "limit": limit}).fetchall()]
        conn.rollback()
    return plan


def explain_abandoned(staging_url: str) -> list[str]:
    import psycopg

    with psycopg.connect(staging_url, autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM scraper_logs").fetchone()[0]
        plan = [r[0] for r in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) SELECT id, run_id FROM scraper_logs "
            "WHERE status = 'running' AND scraper_name = ANY(%s) AND metadata->>'brand' = %s",
            (["photo_downloader"], BRAND)).fetchall()]
    return [f"(scraper_logs holds {n} rows)", *plan]


class _Explaining:
    """Stands in for a psycopg connection: each `execute` of the project's own query
    functions runs as EXPLAIN ANALYZE instead (row locks dropped, so it never takes a row
    from a live claim), records the plan and answers no rows."""

    class _NoRows:
        rowcount = 0

        def fetchall(self) -> list[Any]:
            return []

        def fetchone(self) -> None:
            return None

    def __init__(self, conn: Any) -> None:
        self.conn, self.plans = conn, []

    def execute(self, sql: str, params: Any = None) -> Any:
        sql = sql.replace("FOR UPDATE SKIP LOCKED", "").replace("FOR UPDATE", "")
        plan = [r[0] for r in self.conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params).fetchall()]
        self.plans.append(plan)
        return self._NoRows()


def explain_growth(staging_url: str) -> list[tuple[str, list[str]]]:
    """EXPLAIN ANALYZE of the per-run queries of the stages and the checks, as they run."""
    from datetime import timedelta

    import psycopg

    from unde_dagster.catalog.store import count_missing_from_run
    from unde_dagster.db import queues
    from unde_dagster.db.claims import DOWNLOAD_QUEUE
    from unde_dagster.ximilar import store

    source = f"apify_{BRAND}"
    out: list[tuple[str, list[str]]] = []
    with psycopg.connect(staging_url, autocommit=True) as conn:
        run = store.latest_catalog_run(conn, source)
        probes: list[tuple[str, Any]] = [
            ("download claim's SELECT (db/claims.py claim_batch), every batch",
             lambda c: c.execute(CLAIM_PICK, {"brand": BRAND, "ready": "pending",
                                              "limit": 200})),
            ("collage claim's SELECT (db/claims.py claim_batch), every batch",
             lambda c: c.execute(CLAIM_PICK, {"brand": BRAND, "ready": "uploaded",
                                              "limit": 100})),
            ("ximilar remove-stale claim (ximilar/store.py _CLAIM_REMOVE), every run",
             lambda c: store.claim(c, "remove", source, after=0, limit=50, run=run,
                                   retry_after=timedelta(hours=6))),
            ("ximilar sync claim (ximilar/store.py _CLAIM_SYNC), every batch",
             lambda c: store.claim(c, "sync", source, after=0, limit=50, run=run,
                                   retry_after=timedelta(hours=6))),
            ("catalog count_missing_from_run (catalog/store.py), every catalog run",
             lambda c: count_missing_from_run(c, source, run.run_id or "")),
            ("check: recent_collages (db/queues.py)",
             lambda c: queues.recent_collages(c, BRAND, 5)),
            ("check: stuck_skus uploaded (db/queues.py)",
             lambda c: queues.stuck_skus(c, "uploaded", 6 * 3600, BRAND)),
            ("check: last_batch (db/queues.py)",
             lambda c: queues.last_batch(c, ["collage_worker"], BRAND)),
            ("work sensor: stage_queues originals (db/queues.py), every tick",
             lambda c: queues.stage_queues(c, "originals")),
            ("work sensor: stage_queues ximilar (db/queues.py), every tick",
             lambda c: queues.stage_queues(c, "ximilar")),
            ("work sensor: brands_with_retries download (db/queues.py)",
             lambda c: queues.brands_with_retries(c, DOWNLOAD_QUEUE, 3)),
        ]
        for name, probe in probes:
            fake = _Explaining(conn)
            try:
                probe(fake)
            except Exception as exc:  # a probe that needs real rows: say so, go on
                fake.plans.append([f"(probe stopped: {type(exc).__name__}: {exc})"])
            for plan in fake.plans:
                out.append((name, plan))
    return out


def print_growth(staging_url: str) -> None:
    print("\n  EXPLAIN ANALYZE of the per-run queries (scan nodes, rows removed, time):")
    for name, plan in explain_growth(staging_url):
        keep = [ln.strip() for ln in plan if any(k in ln for k in (
            "Scan", "Rows Removed", "Execution Time", "Sort Method", "probe stopped"))]
        print(f"    {name}:")
        for line in keep:
            print(f"      {line[:150]}")


# --- printing -----------------------------------------------------------------------------

def fmt_mb(kb: int) -> str:
    return f"{kb / 1024:8.1f}"


@dataclass
class Bounds:
    delay_min: float
    delay_max: float
    fetch_s: float
    photos_per_sku: float
    codec_s: float
    workers: int
    records_per_sku: float

    @property
    def downloads(self) -> float:
        photos_per_s = SLOTS / ((self.delay_min + self.delay_max) / 2 + self.fetch_s)
        return photos_per_s / self.photos_per_sku

    @property
    def collages(self) -> float:
        return self.workers / self.codec_s

    @property
    def ximilar(self) -> float:
        return XIMILAR_RATE * RECORDS_PER_REQUEST / self.records_per_sku


def print_run(r: RunFigures, bounds: Bounds) -> None:
    print(f"\n== {r.label}: {r.skus} SKUs, run {r.run_id}: "
          f"{'SUCCESS' if r.success else 'FAILED'}, wall {r.wall_s:.1f} s ==")
    print(f"  raw_products by image_status: {r.status}; ximilar synced: {r.ximilar_skus}")
    bound_of = {"downloads": bounds.downloads, "collages": bounds.collages,
                "ximilar": bounds.ximilar, "catalog": None}
    print(f"  {'stage':<10}{'step wall s':>12}{'batches':>8}{'work s':>9}{'overhead s':>11}"
          f"{'SKUs':>7}{'SKUs/s':>8}{'bound':>8}{'% bound':>9}{'worker MiB':>11}")
    total_work = 0.0
    for step, stage in STAGES:
        log = r.logs.get(stage, {})
        wall = r.steps.get(step)
        work = float(log.get("work_s", 0))
        total_work += work
        skus = int(log.get("fetched", 0)) if stage != "catalog" else r.skus
        rate = skus / wall if wall else 0.0
        bound = bound_of[stage]
        print(f"  {stage:<10}{wall or 0:>12.1f}{int(log.get('batches', 0)):>8}{work:>9.1f}"
              f"{(wall or 0) - work:>11.1f}{skus:>7}{rate:>8.1f}"
              f"{bound if bound else 0:>8.1f}"
              f"{(100 * rate / bound if bound else 0):>8.0f}%"
              f"{fmt_mb(r.step_worker_kb.get(step, 0)):>11}")
    print(f"  orchestration overhead = run wall {r.wall_s:.1f} s - stages' own work "
          f"{total_work:.1f} s (sum of batch started_at..completed_at) = "
          f"{r.wall_s - total_work:.1f} s ({100 * (r.wall_s - total_work) / r.wall_s:.0f}% "
          f"of the run, {1000 * (r.wall_s - total_work) / r.skus:.1f} ms per SKU)")
    for stage, calls in sorted(r.claims.items()):
        ms = [1000 * s for s, n in calls if n]
        empty = [1000 * s for s, n in calls if not n]
        rel = [1000 * s for s in r.releases.get(stage, [])]
        if ms:
            print(f"  claim_batch [{stage}]: {len(ms)} batches, DB time per claimed batch "
                  f"mean {statistics.fmean(ms):.1f} ms, first {ms[0]:.1f}, last {ms[-1]:.1f}, "
                  f"max {max(ms):.1f} (release_expired inside: mean "
                  f"{statistics.fmean(rel) if rel else 0:.1f} ms); empty claim "
                  f"{statistics.fmean(empty) if empty else 0:.1f} ms")
    print(f"  CPU per SKU of each step (ms, all processes; the {os.cpu_count()} cores' ceiling "
          "is cores / the sum, SKUs/s, whatever the bound):")
    for step, stage in STAGES:
        cpu, skus = r.step_cpu.get(step), int(r.logs.get(stage, {}).get("fetched", 0))
        if stage == "catalog":
            skus = r.skus
        if not cpu or not skus:
            continue
        total = sum(cpu.values())
        parts = ", ".join(f"{name.split(' (')[0]} {1000 * v / skus:.1f}"
                          for name, v in cpu.items() if v >= 0.05)
        ceiling = (os.cpu_count() or 1) * skus / total if total else 0.0
        print(f"    {stage:<10} {1000 * total / skus:7.1f} ms/SKU -> ceiling {ceiling:7.1f} "
              f"SKUs/s  ({parts})")
    if r.cpu:
        print("  CPU during the run (utime+stime from /proc, s; % of one core over the wall):")
        for name, secs in r.cpu.items():
            print(f"    {name:<56}{secs:8.1f} s {100 * secs / r.wall_s:5.0f}%")
    print(f"  Dagster event log: {r.event_rows} rows ({r.event_rows / r.skus:.3f} per SKU), "
          f"{r.event_bytes / 1024:.0f} KiB ({r.event_bytes / r.skus:.0f} B per SKU)")
    for kind, rows, size, biggest in r.events[:8]:
        print(f"    {kind:<28}{rows:>6} rows {size / 1024:>9.1f} KiB  largest {biggest} B")
    for table in ("raw_products", "scraper_logs", "catalog_rejections"):
        seq, tup, idx, upd, hot = r.scans.get(table, (0,) * 5)
        print(f"  {table}: {seq} seq scans reading {tup} rows ({tup / r.skus:.2f} per SKU), "
              f"{idx} index scans, {upd} rows updated ({upd / r.skus:.2f} per SKU, {hot} HOT)")
    if r.statements:
        print("  pg_stat_statements, top by total time:")
        for query, calls, total in r.statements:
            print(f"    {total:9.1f} ms {calls:>6} calls  {' '.join(query.split())[:110]}")


def print_memory(sampler: MemorySampler) -> dict[str, tuple[int, int]]:
    print("\n  peak RSS (MiB) per process group, sampled every "
          f"{sampler.every_s:g} s from /proc (psutil is not installed):")
    print(f"  {'group':<56}{'procs':>6}{'max 1 proc':>11}{'sum RSS':>9}{'sum anon+shm':>13}"
          f"{'max anon 1':>11}")
    out = {}
    for name, g in sampler.groups.items():
        if not g.peak_per_pid:
            continue
        biggest = max(g.peak_per_pid.values(), default=0)
        comms = ", ".join(f"{c}x{n}" for c, n in g.comms.most_common(4))
        print(f"  {name:<56}{len(g.peak_per_pid):>6}{fmt_mb(biggest):>11}"
              f"{fmt_mb(g.peak_sum_rss):>9}{fmt_mb(g.peak_sum_anon):>13}"
              f"{fmt_mb(g.peak_anon_one):>11}  [{comms}]")
        if g.peak_anon_who:
            print(f"  {'':<56}largest private memory: {g.peak_anon_who}")
        out[name] = (biggest, g.peak_sum_rss, g.peak_anon_one)
    return out


# --- one size, end to end ---------------------------------------------------------------

def bench_size(n_skus: int, args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from unde_local.stack import LOCAL_PROFILE

    root = Path(tempfile.mkdtemp(prefix=f"unde-scale-{n_skus}-"))
    photo_size = None if args.full_size else SMALL_PHOTOS
    print(f"\n######## {n_skus} SKUs of {BRAND}; photos "
          f"{'the emulator default (1920x2880 class)' if args.full_size else photo_size}; "
          f"stack in {root}", flush=True)
    t_up = time.monotonic()
    stack = StackProcess(root, photo_size)
    print(f"  stack up in {time.monotonic() - t_up:.1f} s (pid {stack.pid}, postmaster "
          f"{stack.postmaster_pid()})", flush=True)
    sampler = MemorySampler(stack)
    try:
        env = dict(stack.env)
        home = root / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "unde_local" / "dagster.yaml", home / "dagster.yaml")
        env["DAGSTER_HOME"] = str(home)
        os.environ.update(env)
        delay_min = float(env.get("DOWNLOAD_DELAY_MIN_S", LOCAL_PROFILE["DOWNLOAD_DELAY_MIN_S"]))
        delay_max = float(env.get("DOWNLOAD_DELAY_MAX_S", LOCAL_PROFILE["DOWNLOAD_DELAY_MAX_S"]))
        print(f"  downloader politeness: local profile DOWNLOAD_DELAY_MIN_S={delay_min}, "
              f"DOWNLOAD_DELAY_MAX_S={delay_max}, DOWNLOAD_BACKOFF_S="
              f"{env.get('DOWNLOAD_BACKOFF_S')} (production: 0.5-2 s, 5,15,45 s)")

        from unde_dagster.resources.collage import CollageMaker
        from unde_local.emulators import DEFAULT_CDN_BASE_URL
        t0 = time.monotonic()
        skus_photos, n_items, _, _ = catalog_elsewhere(
            n_skus, DEFAULT_CDN_BASE_URL, env["APIFY_API_URL"])
        print(f"  catalog: {n_items} items, {len(skus_photos)} colour SKUs, "
              f"{sum(map(len, skus_photos))} photos, built and sent in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        fetch_s, sample = measure_fetch(env["PROXY_URL"], skus_photos)
        codec_s = measure_codec(sample)
        put_s, get_s = measure_s3(env, sample[0][0])
        print(f"  object store: PUT {1000 * put_s:.1f} ms, GET {1000 * get_s:.1f} ms per "
              f"{len(sample[0][0]) / 1024:.0f} KiB photo (boto3, sequential; not in the bounds)")
        bounds = Bounds(delay_min, delay_max, fetch_s,
                        statistics.fmean(map(len, skus_photos)), codec_s, CollageMaker().workers,
                        statistics.fmean(min(2, len(p)) for p in skus_photos))
        print(f"  bounds: fetch {1000 * fetch_s:.1f} ms/photo through the proxy, "
              f"{bounds.photos_per_sku:.2f} photos/SKU -> downloads "
              f"{SLOTS} / ({(delay_min + delay_max) / 2:.3f} s + {fetch_s:.3f} s) / "
              f"{bounds.photos_per_sku:.2f} = {bounds.downloads:.1f} SKUs/s; collages "
              f"build_collage {1000 * codec_s:.1f} ms/SKU x {bounds.workers} workers = "
              f"{bounds.collages:.1f} SKUs/s; Ximilar {XIMILAR_RATE:g} req/s x "
              f"{RECORDS_PER_REQUEST} / {bounds.records_per_sku:.2f} records/SKU = "
              f"{bounds.ximilar:.1f} SKUs/s", flush=True)

        patch_claims()
        sampler.start()
        instance = dg.DagsterInstance.from_config(str(home))
        runs = []
        try:
            full = run_pipeline("full run", n_skus, instance, env, sampler)
            print_run(full, bounds)
            runs.append(full)
            if args.incremental:
                _, _, n_changed, n_gone = catalog_elsewhere(
                    n_skus, DEFAULT_CDN_BASE_URL, env["APIFY_API_URL"], (args.changed, args.gone))
                label = (f"incremental run (next day: {n_changed} SKUs' photos changed, "
                         f"{n_gone} gone)")
                inc = run_pipeline(label, n_skus, instance, env, sampler)
                print_run(inc, bounds)
                runs.append(inc)
                print(f"\n  wall time: full {full.wall_s:.1f} s, incremental {inc.wall_s:.1f} s "
                      f"({100 * inc.wall_s / full.wall_s:.0f}% of the full run for "
                      f"{n_changed + n_gone} changed/gone SKUs = "
                      f"{100 * (n_changed + n_gone) / n_skus:.0f}% of the brand)")
        finally:
            sampler.stop()
            instance.dispose()
        memory = print_memory(sampler)
        plan = explain_claim(env["STAGING_DB_URL"])
        print(f"\n  EXPLAIN ANALYZE of the download claim's SELECT with all {n_skus} SKUs "
              "pending (rolled back):")
        for line in plan:
            print(f"    {line}")
        print_growth(env["STAGING_DB_URL"])
        print("\n  EXPLAIN ANALYZE of close_abandoned_logs' SELECT (every stage run, "
              "db/scraper_logs.py):")
        for line in explain_abandoned(env["STAGING_DB_URL"]):
            print(f"    {line}")
        if args.ui:
            from bench.ui_pages import print_ui, time_pages

            print_ui(time_pages(env, root / "services", BRAND, runs[-1].run_id))
        return {"skus": n_skus, "runs": runs, "memory": memory, "bounds": bounds}
    finally:
        sampler.stop()
        stack.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def print_compare(results: list[dict[str, Any]]) -> None:
    base, *rest = results
    for cand in rest:
        b, c = base["runs"][0], cand["runs"][0]
        print(f"\n== baseline {base['skus']} SKUs beside candidate {cand['skus']} SKUs "
              f"({cand['skus'] / base['skus']:.0f}x the work) ==")
        print(f"  {'figure':<58}{'baseline':>12}{'candidate':>12}{'ratio':>8}")

        def row(name: str, x: float, y: float, fmt: str = "{:12.2f}") -> None:
            print(f"  {name:<58}{fmt.format(x)}{fmt.format(y)}{(y / x if x else 0):>8.2f}")

        row("run wall s per 1,000 SKUs", 1000 * b.wall_s / b.skus, 1000 * c.wall_s / c.skus)
        for step, stage in STAGES:
            row(f"{stage} step s per 1,000 SKUs", 1000 * b.steps.get(step, 0) / b.skus,
                1000 * c.steps.get(step, 0) / c.skus)
        row("orchestration overhead ms per SKU",
            1000 * (b.wall_s - sum(d.get("work_s", 0) for d in b.logs.values())) / b.skus,
            1000 * (c.wall_s - sum(d.get("work_s", 0) for d in c.logs.values())) / c.skus)
        row("event-log rows per SKU", b.event_rows / b.skus, c.event_rows / c.skus, "{:12.3f}")
        row("event-log bytes per SKU", b.event_bytes / b.skus, c.event_bytes / c.skus)
        for stage in ("download", "collage"):
            bm = [s for s, n in b.claims.get(stage, []) if n]
            cm = [s for s, n in c.claims.get(stage, []) if n]
            if bm and cm:
                row(f"claim_batch ms per claimed batch [{stage}]",
                    1000 * statistics.fmean(bm), 1000 * statistics.fmean(cm))
        row("raw_products seq-scan rows read per SKU", b.scans.get("raw_products", (0, 0))[1]
            / b.skus, c.scans.get("raw_products", (0, 0))[1] / c.skus)
        if len(base["runs"]) > 1 and len(cand["runs"]) > 1:
            bi, ci = base["runs"][1], cand["runs"][1]
            row("incremental run wall s per 1,000 SKUs", 1000 * bi.wall_s / bi.skus,
                1000 * ci.wall_s / ci.skus)
            row("incremental run / full run wall", bi.wall_s / b.wall_s, ci.wall_s / c.wall_s)
            row("incremental: raw_products rows updated per SKU",
                bi.scans.get("raw_products", (0,) * 5)[3] / bi.skus,
                ci.scans.get("raw_products", (0,) * 5)[3] / ci.skus)
        for name, (_peak1, peak_sum, anon_one) in cand["memory"].items():
            _b1, bsum, banon = base["memory"].get(name, (0, 0, 0))
            row(f"peak RSS MiB, sum: {name[:38]}", bsum / 1024, peak_sum / 1024)
            row("  largest private (anon) MiB of one process", banon / 1024, anon_one / 1024)
        over = [f"{k.split(' (')[0]} {v[1] / bsum:.2f}x" for k, v in cand["memory"].items()
                if (bsum := base["memory"].get(k, (0, 0, 0))[1]) and v[1] > 1.2 * bsum
                and k not in NOT_THE_PRODUCT]
        ev_ok = c.event_rows / c.skus <= 1.2 * b.event_rows / b.skus
        print("  check: every process group's peak memory within 1.2x of the baseline: "
              + (f"NO ({', '.join(over)})" if over else "OK")
              + f"; event-log rows per SKU flat (within 1.2x): {'OK' if ev_ok else 'NO'}")
        print("  (the stack process is the emulators of Apify, the CDN, Ximilar and fal: they "
              "hold the brand's catalog and Ximilar collection in memory, as the real services "
              "hold them on their side)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=None, help="colour SKUs of the brand (10000)")
    ap.add_argument("--full-size", action="store_true",
                    help="the emulator's normal photos (1920x2880 class) instead of 200x300")
    ap.add_argument("--incremental", action="store_true",
                    help="after the full run: next day's catalog, run again")
    ap.add_argument("--changed", type=float, default=0.05, help="share of SKUs with new photos")
    ap.add_argument("--gone", type=float, default=0.02, help="share of SKUs gone")
    ap.add_argument("--quick", action="store_true", help="200 SKUs + incremental: a smoke run")
    ap.add_argument("--compare", default=None,
                    help="sizes run one after the other, the first the baseline: 1000,10000")
    ap.add_argument("--keep", action="store_true", help="keep each stack's folder")
    ap.add_argument("--ui", action="store_true",
                    help="after the runs: time the Dagster UI's pages in headless Chromium")
    ap.add_argument("--serve-stack", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--explain-stack", default=None, metavar="STACK_DIR",
                    help="only EXPLAIN the per-run queries on a running bench stack "
                         "(its /tmp/unde-scale-* folder), e.g. while a big run goes")
    args = ap.parse_args()
    if args.serve_stack:
        serve_stack(Path(args.serve_stack))
        return
    if args.explain_stack:
        env = json.loads((Path(args.explain_stack) / ENV_FILE).read_text())["env"]
        print_growth(env["STAGING_DB_URL"])
        return
    if args.compare:
        try:
            sizes = [int(s) for s in args.compare.split(",") if s.strip()]
        except ValueError:
            ap.error(f"--compare wants sizes like 1000,10000, not {args.compare!r}")
    else:
        sizes = [args.skus or (200 if args.quick else 10_000)]
    if args.quick:
        args.incremental = True
    if any(n < 20 for n in sizes):
        ap.error("at least 20 SKUs per size")
    with contextlib.suppress(OSError):
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f} at start (other jobs share it)")
    results = [bench_size(n, args) for n in sizes]
    if len(results) > 1:
        print_compare(results)
    with contextlib.suppress(OSError):
        load = os.getloadavg()
        print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
