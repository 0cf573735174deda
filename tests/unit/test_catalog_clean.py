"""Cleaning Apify values for PostgreSQL: NUL, lone surrogates, NaN, keys, nesting."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from unde_dagster.catalog.clean import (
    MAX_DEPTH,
    REPLACEMENT,
    Cleaning,
    ItemTooDeep,
    clean_text,
    clean_value,
)


def storable(value: Any) -> bool:
    """What PostgreSQL's text and jsonb accept: UTF-8 encodable, no NUL, no NaN/inf."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # raises on a lone surrogate
    return "\x00" not in text and "\\u0000" not in text


@pytest.mark.parametrize(
    ("text", "expected", "nuls", "lone"),
    [
        ("plain", "plain", 0, 0),
        ("Ärmel – 100 %", "Ärmel – 100 %", 0, 0),
        ("a\x00b\x00", "ab", 2, 0),
        ("x\ud800y", f"x{REPLACEMENT}y", 0, 1),
        ("\udfff", REPLACEMENT, 0, 1),
        ("\ud83d\ude00 pair", "\U0001f600 pair", 0, 0),  # a pair as two code points joins
        ("\x00\udc00\U0001f600", f"{REPLACEMENT}\U0001f600", 1, 1),
        (f"kept {REPLACEMENT}", f"kept {REPLACEMENT}", 0, 0),
    ],
)
def test_clean_text(text: str, expected: str, nuls: int, lone: int) -> None:
    report = Cleaning()
    assert clean_text(text, report) == expected
    assert (report.nul_bytes, report.surrogates) == (nuls, lone)
    expected.encode("utf-8")


def test_clean_value_reaches_every_string_and_key_and_nulls_non_finite_numbers() -> None:
    value = {
        "na\x00me": "Blazer\x00",
        "nested": {"parts": [{"description": "OUTER\x00SHELL", "x": ["\ud800", 1.5]}]},
        "price": float("nan"),
        "big": float("inf"),
        "ok": [True, None, 3, "fine"],
    }
    before = copy.deepcopy(value)
    report = Cleaning()
    out = clean_value(value, report)
    assert out == {
        "name": "Blazer",
        "nested": {"parts": [{"description": "OUTERSHELL", "x": [REPLACEMENT, 1.5]}]},
        "price": None,
        "big": None,
        "ok": [True, None, 3, "fine"],
    }
    assert storable(out)
    assert (report.nul_bytes, report.surrogates, report.non_finite_numbers) == (3, 1, 2)
    assert report.changed
    assert "$.nested.parts[0].x[0]" in report.paths
    assert json.dumps(value, default=str) == json.dumps(before, default=str)  # not mutated
    assert math.isnan(value["price"])


def test_keys_equal_once_cleaned_keep_the_first() -> None:
    assert clean_value({"a": 1, "a\x00": 2}) == {"a": 1}


def test_clean_value_of_clean_input_is_an_equal_copy_and_reports_no_change() -> None:
    report = Cleaning()
    item = {"id": 1, "name": "Blazer – Ärmel", "xs": [{"p": 1.5}, None, False]}
    out = clean_value(item, report)
    assert out == item and out is not item and out["xs"] is not item["xs"]
    assert not report.changed and report.paths == []


def test_too_deep_raises() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ItemTooDeep):
        clean_value(deep)
    assert clean_value(deep[0]) == deep[0]  # exactly MAX_DEPTH levels is fine
