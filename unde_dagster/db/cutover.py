"""`python -m unde_dagster.db.cutover`: what the old servers left that the project will not
take up by itself, and whether an old server is still writing (README, "Cut-over").

Each finding is a count, a few sample ids and what to do. Exit status 1 when a finding needs
an operator (rows no stage will touch, an old server still connected), else 0.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import psycopg

OLD_SERVER_ROLES = ("apify", "downloader", "collage", "ximilar", "scraper")


@dataclass(frozen=True)
class Check:
    name: str
    where: str  # SQL predicate on raw_products (built from constants only)
    action: str
    blocking: bool = True


def checks(max_attempts: int) -> list[Check]:
    return [
        Check(
            "image errors out of attempts",
            f"image_status = 'error' AND ((image_error_stage = 'download' AND image_attempts "
            f">= {max_attempts}) OR (image_error_stage = 'collage' AND collage_attempts >= "
            f"{max_attempts}))",
            "no retry pass takes them; read error_message, fix the cause, then reset the "
            "stage's attempts column to 0",
        ),
        Check(
            "errors without a stage",
            "image_status = 'error' AND image_error_stage IS NULL",
            "written around the migration's guard; run the migration again",
        ),
        Check(
            "unknown statuses",
            "image_status IS NULL "
            "OR image_status NOT IN ('pending', 'uploaded', 'collage_ready', 'error') "
            "OR ximilar_status NOT IN ('pending', 'partial', 'synced', 'error') "
            "OR sync_status NOT IN ('pending', 'synced', 'skipped', 'error')",
            "an old worker wrote them after the migration; run the migration again",
        ),
        Check(
            "uploaded without originals",
            "image_status = 'uploaded' AND (jsonb_typeof(image_urls) IS DISTINCT FROM 'array' "
            "OR jsonb_array_length(image_urls) = 0)",
            "the collage stage will fail them (no_originals) and the download stage never "
            "sees them; set them to 'pending' with SET LOCAL unde.allow_backward = 'on'",
        ),
        Check(
            "collage_ready without a collage",
            "image_status = 'collage_ready' AND collage_url IS NULL",
            "no stage rebuilds them; set them to 'uploaded' with SET LOCAL "
            "unde.allow_backward = 'on'",
        ),
        Check(
            "Ximilar errors without a reason",
            "ximilar_status = 'error' AND ximilar_error IS NULL",
            "the retry pass skips them; run the migration again",
        ),
        Check(
            "old item-id rows not adopted yet",
            "colour_id IS NULL",
            "the brand's next catalog run adopts them (or they leave the catalog as stale)",
            blocking=False,
        ),
    ]


@dataclass(frozen=True)
class Finding:
    check: Check
    count: int
    samples: list[str]


def findings(conn: psycopg.Connection, max_attempts: int = 3) -> list[Finding]:
    found = []
    for check in checks(max_attempts):
        rows = conn.execute(
            "SELECT count(*) OVER (), brand || '/' || external_id FROM raw_products "
            f"WHERE {check.where} ORDER BY id LIMIT 5"
        ).fetchall()
        if rows:
            found.append(Finding(check, int(rows[0][0]), [str(r[1]) for r in rows]))
    return found


def old_server_sessions(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    """(role, client address, sessions) of the old servers' roles connected now."""
    rows = conn.execute(
        "SELECT usename, COALESCE(host(client_addr), 'local'), count(*) FROM pg_stat_activity "
        "WHERE usename = ANY(%s) AND datname = current_database() GROUP BY 1, 2 ORDER BY 1, 2",
        (list(OLD_SERVER_ROLES),),
    ).fetchall()
    return [(str(u), str(a), int(n)) for u, a, n in rows]


def report(conn: psycopg.Connection, max_attempts: int = 3) -> tuple[list[str], bool]:
    """Readable lines, and whether anything needs an operator."""
    lines, blocking = [], False
    legacy = conn.execute("SELECT count(*) FROM ximilar_legacy_skus").fetchone()
    for finding in findings(conn, max_attempts):
        blocking |= finding.check.blocking
        mark = "ACTION" if finding.check.blocking else "info"
        lines.append(f"[{mark}] {finding.check.name}: {finding.count} "
                     f"(e.g. {', '.join(finding.samples)}) -> {finding.check.action}")
    if legacy and legacy[0]:
        lines.append(f"[info] old Ximilar records queued for removal: {legacy[0]} item ids "
                     "-> the brand's next ximilar_index run deletes them")
    for role, address, sessions in old_server_sessions(conn):
        blocking = True
        lines.append(f"[ACTION] old server role {role!r} connected from {address} "
                     f"({sessions} sessions) -> stop that server before the first runs")
    if not lines:
        lines.append("nothing left behind: every row is in a state a stage takes up")
    return lines, blocking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staging-url", default=os.environ.get("STAGING_DB_URL"))
    parser.add_argument("--max-attempts", type=int, default=3)
    args = parser.parse_args()
    if not args.staging_url:
        parser.error("set STAGING_DB_URL or pass --staging-url")
    with psycopg.connect(args.staging_url, autocommit=True, prepare_threshold=None) as conn:
        lines, blocking = report(conn, args.max_attempts)
    print("\n".join(lines))
    raise SystemExit(1 if blocking else 0)


if __name__ == "__main__":
    main()
