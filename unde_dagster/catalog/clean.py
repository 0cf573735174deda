"""Making an Apify item safe for PostgreSQL before anything else reads it.

PostgreSQL refuses a NUL in `text` and `\\u0000` in `jsonb`, UTF-8 cannot carry a lone
surrogate (JSON's `"\\ud800"` decodes to one), and `jsonb` has no NaN or Infinity (Python's
`json` reads `NaN` and `1e999`). One such value used to fail the whole chunk, so the item is
cleaned here, keys included, and what was changed is counted rather than silently lost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64  # deeper nesting is not a catalog item; also keeps recursion bounded
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


class ItemTooDeep(ValueError):
    """The item nests deeper than MAX_DEPTH; it is rejected rather than cleaned."""


@dataclass
class Cleaning:
    """What cleaning one item changed: counts by kind of fix."""

    nul_bytes: int = 0
    surrogates: int = 0
    non_finite_numbers: int = 0
    paths: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.nul_bytes or self.surrogates or self.non_finite_numbers)


def clean_text(text: str, report: Cleaning | None = None) -> str:
    """`text` without NUL characters, lone surrogates replaced by U+FFFD.

    A surrogate pair left as two code points becomes the one character it encodes.
    """
    if text.isascii() and "\x00" not in text:
        return text
    nuls = text.count("\x00")
    if nuls:
        text = text.replace("\x00", "")
    lone = 0
    if _SURROGATE.search(text):
        joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        lone = joined.count(REPLACEMENT) - text.count(REPLACEMENT)
        text = joined
    if report is not None:
        report.nul_bytes += nuls
        report.surrogates += lone
    return text


def clean_value(value: Any, report: Cleaning | None = None) -> Any:
    """A deep copy of a JSON value with every string (and key) cleaned, NaN/±inf as null.

    Raises ItemTooDeep past MAX_DEPTH levels of nesting.
    """
    return _clean(value, report if report is not None else Cleaning(), 0, "$")


def _clean(value: Any, report: Cleaning, depth: int, path: str) -> Any:
    if depth > MAX_DEPTH:
        raise ItemTooDeep(f"nested deeper than {MAX_DEPTH} levels at {path[:200]}")
    if isinstance(value, str):
        return _clean_str(value, report, path)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        report.non_finite_numbers += 1
        _note(report, path)
        return None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _clean_str(str(key), report, path)
            if name not in out:  # two keys equal once cleaned: the first one stays
                out[name] = _clean(item, report, depth + 1, f"{path}.{name}")
        return out
    if isinstance(value, list | tuple):
        return [_clean(v, report, depth + 1, f"{path}[{i}]") for i, v in enumerate(value)]
    return _clean_str(str(value), report, path)  # not a JSON type: keep its text


def _clean_str(text: str, report: Cleaning, path: str) -> str:
    before = report.nul_bytes + report.surrogates
    cleaned = clean_text(text, report)
    if report.nul_bytes + report.surrogates != before:
        _note(report, path)
    return cleaned


def _note(report: Cleaning, path: str) -> None:
    if len(report.paths) < 10:
        report.paths.append(clean_text(path)[:200])
