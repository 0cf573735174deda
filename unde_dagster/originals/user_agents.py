"""User-Agent pool for photo requests.

The seed rotates 8 real browser strings so a residential-proxy request looks like an
ordinary shopper. These are the frozen (UA-reduction) strings that stable Chrome,
Edge, Firefox and Safari send as of their autumn-2025 releases (Chrome/Edge 140,
Firefox 143, Safari 26 / iOS 18.6). Refresh the versions every few months: a UA that
is a year old starts to stand out. ``FetchSettings.user_agents`` can override the pool.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

USER_AGENTS: tuple[str, ...] = (
    # Chrome 140, Windows / macOS / Linux / Android
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Mobile Safari/537.36",
    # Edge 140, Windows
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0",
    # Firefox 143, Windows / macOS
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:143.0) Gecko/20100101 Firefox/143.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:143.0) Gecko/20100101 Firefox/143.0",
    # Safari 26 on macOS, Safari 18.6 on iPhone
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/26.0 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
)


def random_user_agent(rng: random.Random, pool: Sequence[str] = USER_AGENTS) -> str:
    """One UA from ``pool``; ``rng`` is injected so tests are deterministic."""
    return rng.choice(pool)
