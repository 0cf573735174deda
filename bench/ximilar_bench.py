"""Ximilar sync: HTTP requests and wall time, ours vs the seed's one-POST-per-photo loop.

    .venv/bin/python bench/ximilar_bench.py                    # 1,000 SKUs x 2, 10 req/s, ~4 min
    .venv/bin/python bench/ximilar_bench.py --skus 200 --rate 50   # quick look

One run against the local stack (real PostgreSQL, the Ximilar emulator over HTTP, an
injected per-request latency). Both variants use the same rate limiter at `--rate`
requests/s and write each SKU's state to the Staging DB:
  ours  unde_dagster.ximilar.sync.run_brand: claimed batches, 10 records per insert
  seed  the seed's task: SELECT pending, one insert request per photo, UPDATE per SKU
Each variant writes into its own emulator collection, read back at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from unde_dagster.ximilar.client import ClientSettings, XimilarClient  # noqa: E402
from unde_dagster.ximilar.records import SkuForIndex, record_id  # noqa: E402
from unde_dagster.ximilar.sync import SyncSettings, run_brand  # noqa: E402
from unde_local.stack import LocalStack, StackSettings, database_url_from_env  # noqa: E402

SOURCE = "apify_zara"


def seed_rows(conn: psycopg.Connection, skus: int, photos: int) -> None:
    conn.execute("TRUNCATE raw_products, scraper_logs RESTART IDENTITY")
    rows = [
        (SOURCE, f"{100000 + i}-{i % 9}", Jsonb([
            f"http://s3.local/unde-images/originals/zara/{100000 + i}-{i % 9}/{k}.jpg"
            for k in range(1, photos + 1)]))
        for i in range(skus)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw_products (source, external_id, brand, name, category, price, "
            "scraped_at, image_status, index_scope, image_urls, last_seen_run_id) VALUES "
            "(%s, %s, 'zara', 'Dress', 'dresses', 149.90, NOW(), 'uploaded', 'pilot', %s, 'r1')",
            rows)
    conn.execute("INSERT INTO scraper_logs (scraper_name, run_id, status, started_at, metadata) "
                 "VALUES (%s, 'r1', 'success', NOW() - interval '1 hour', "
                 "'{\"writer\": \"unde-dagster\"}')", (SOURCE,))


def reset_state(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE raw_products SET ximilar_status = 'pending', "
                 "ximilar_synced_urls = '[]', ximilar_synced_at = NULL")
    conn.execute("DELETE FROM scraper_logs WHERE scraper_name LIKE 'ximilar%'")


def seed_loop(conn: psycopg.Connection, client: XimilarClient, target: int) -> int:
    """The seed's task on the documented API: one request per photo, UPDATE per SKU."""
    rows = conn.execute(
        "SELECT id, external_id, brand, name, category, price, currency, image_urls "
        "FROM raw_products WHERE image_status IN ('uploaded', 'collage_ready') "
        "AND ximilar_status = 'pending' ORDER BY id").fetchall()
    for id_, ext, brand, name, category, price, currency, urls in rows:
        sku = SkuForIndex(id_, brand, ext, name, category, price, currency, tuple(urls), (),
                          target, "pending")
        for n, url in sku.wanted():
            client.insert([{"_id": record_id(brand, ext, n), "_url": url, **sku.metadata()}])
        conn.execute("UPDATE raw_products SET ximilar_status = 'synced', "
                     "ximilar_synced_at = NOW() WHERE id = %s", (id_,))
    return len(rows)


def collection_size(base: str, coll: str) -> int:
    return int(requests.get(f"{base}/_emulator/ximilar/collection/{coll}", timeout=60)
               .json()["count"])


def measure(name: str, stack: LocalStack, rate: float, fn: Any) -> dict[str, Any]:
    assert stack.emulators is not None
    faults = stack.emulators.faults["ximilar"]
    coll = f"bench-{name}"
    client = XimilarClient(ClientSettings(
        api_url=stack.env["XIMILAR_API_URL"], token=stack.env["XIMILAR_TOKEN"],
        collection_id=coll, rate_limit_per_s=rate))
    latency = faults.latency_ms
    faults.clear(stats=True)  # also resets the latency: set it again
    faults.set_latency(latency)
    with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
        reset_state(conn)
        t0 = time.perf_counter()
        fn(conn, client)
        wall = time.perf_counter() - t0
    seen = faults.stats(include_requests=False)["total"]
    return {"name": name, "requests": client.requests_made, "seen": seen, "wall": wall,
            "records": collection_size(stack.emulators.base_url("ximilar"), coll)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=1000)
    ap.add_argument("--photos", type=int, default=3, help="photos per SKU (first 2 are sent)")
    ap.add_argument("--target", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10.0, help="requests/s, both variants")
    ap.add_argument("--latency-ms", type=float, default=30.0, help="per-request latency")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="unde-ximilar-bench-"))
    stack = LocalStack(StackSettings(root=root, items_per_brand=5,
                                     database_url=database_url_from_env()))
    stack.start()
    try:
        assert stack.emulators is not None
        with psycopg.connect(stack.env["STAGING_DB_URL"], autocommit=True) as conn:
            seed_rows(conn, args.skus, args.photos)
            conn.execute("UPDATE raw_products SET ximilar_target_count = %s", (args.target,))
        stack.emulators.faults["ximilar"].set_latency(args.latency_ms)
        ours = measure("ours", stack, args.rate, lambda c, x: run_brand(
            c, x, SOURCE, "bench", settings=SyncSettings(batch_skus=50)))
        seed = measure("seed", stack, args.rate, lambda c, x: seed_loop(c, x, args.target))
    finally:
        stack.stop()
    expected = args.skus * min(args.target, args.photos)
    print(f"\n{args.skus} pilot SKUs x {min(args.target, args.photos)} photos = {expected} "
          f"records; rate limit {args.rate:g} req/s; emulator latency {args.latency_ms:g} ms")
    print(f"{'variant':<8}{'requests':>10}{'seen by API':>13}{'wall s':>9}{'records/s':>11}"
          f"{'in collection':>15}")
    for r in (ours, seed):
        print(f"{r['name']:<8}{r['requests']:>10}{r['seen']:>13}{r['wall']:>9.1f}"
              f"{r['records'] / r['wall']:>11.1f}{r['records']:>15}")
    print(f"requests: {seed['requests'] / max(ours['requests'], 1):.1f}x fewer; wall time: "
          f"{seed['wall'] / ours['wall']:.1f}x shorter")
    ok = ours["requests"] <= expected / 10 + args.skus / 50 and ours["records"] == expected
    print("check: ours <= ceil(records/10) per batch and the collection holds exactly the "
          f"expected records: {'OK' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
