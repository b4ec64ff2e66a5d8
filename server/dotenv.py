"""A tiny .env reader: KEY=VALUE lines, `#` comments, optional `export ` and quotes. No new dependency."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_KEYS = ("STST_TOKEN", "BITFLYER_API_KEY", "BITFLYER_API_SECRET")


def parse_env(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # unquoted trailing comment
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def load_env_file(path: Path, keys: Iterable[str] = ENV_KEYS) -> list[str]:
    """Put the named keys from `path` into os.environ unless already set there (the real environment wins).
    Returns the names loaded — never the values."""
    if not path.is_file():
        return []
    values = parse_env(path.read_text(encoding="utf-8"))
    loaded = []
    for key in keys:
        if key in values and values[key] != "" and not os.environ.get(key):
            os.environ[key] = values[key]
            loaded.append(key)
    return loaded
