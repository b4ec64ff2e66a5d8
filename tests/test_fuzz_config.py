"""Config files and live patches fuzzed against the loader: every input is accepted whole or refused with
field paths (ConfigError), never another exception, and a refused live patch leaves the config as it was."""

from __future__ import annotations

import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import AppConfig, ConfigError, load_app_config
from bot.config.loader import apply_live_patch, deep_merge, validate_config
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "configs" / "base.yml"
_CFG = make_config()
_DUMP = _CFG.model_dump(mode="python")
# the real keys, so generated trees reach deep into the models instead of stopping at "unknown key"
SECTIONS = sorted(k for k, v in _DUMP.items() if isinstance(v, dict))
FIELDS = sorted({f for v in _DUMP.values() if isinstance(v, dict) for f in v})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 10**303, -(10**303), 2**63, 2**64 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 400),
    st.text(max_size=30),
    st.sampled_from(
        [
            "1e303",
            "nan",
            "inf",
            "-0",
            "0.0001",
            "mid",
            "best",
            "inside",
            "Asia/Tokyo",
            "Mars/Olympus",
            "",
            " ",
            "\x00",
            "10 MB",
            "running",
            "stopped",
            "sim",
            "live",
            "paper",
        ]
    ),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(string.ascii_letters + "_", min_size=1, max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
sections = st.dictionaries(
    st.one_of(st.sampled_from(SECTIONS), keys),
    st.one_of(st.dictionaries(keys, values, max_size=6), values),
    max_size=4,
)


class _Dumper(yaml.SafeDumper):
    pass


# a Decimal is written as the number it is (the loader reads YAML numbers as Decimal)
_Dumper.add_representer(Decimal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:float", str(v)))


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True)


def _paths_named(e: ConfigError) -> bool:
    return bool(e.errors) and all(
        isinstance(err.field, str) and err.field and err.message for err in e.errors
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override=sections)
def test_any_override_is_accepted_whole_or_refused_with_field_paths(override: dict[str, Any]) -> None:
    data = deep_merge(_DUMP, override) if isinstance(override, dict) else override
    try:
        cfg = validate_config(data, "fuzz")
    except ConfigError as e:
        assert _paths_named(e), e.errors
        return
    assert isinstance(cfg, AppConfig)
    assert cfg.strategy.size_min <= cfg.exchange.max_order_btc
    assert cfg.strategy.max_inventory_btc <= cfg.exchange.max_inventory_btc


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    text=st.one_of(
        st.text(max_size=200),
        sections.map(_yaml),
        st.sampled_from(
            [
                "strategy: [",
                "{{{",
                "- a\n- b",
                "strategy: !!python/object:os.system x",
                "a: &x [*x]",
                "strategy:\n  stall_T_ms: 1e303",
                "\ufeffstrategy: {}",
                "risk: {daily_pnl_jpy: .nan}",
                "strategy: {size_min: 0.0000000001}",
            ]
        ),
    )
)
def test_any_config_file_is_loaded_whole_or_refused_with_field_paths(tmp_path: Path, text: str) -> None:
    override = tmp_path / "override.yml"
    override.write_text(text, encoding="utf-8", errors="surrogatepass") if _encodable(
        text
    ) else override.write_bytes(text.encode("utf-8", "replace"))
    try:
        cfg = load_app_config(BASE, override)
    except ConfigError as e:
        assert _paths_named(e), e.errors
        return
    assert isinstance(cfg, AppConfig)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    patch=st.one_of(
        values,
        st.dictionaries(
            st.sampled_from(["strategy", "risk", "exchange", "runner", "x"]),
            st.one_of(st.dictionaries(keys, values, max_size=5), values),
            max_size=3,
        ),
    )
)
def test_any_live_patch_is_applied_whole_or_refused_and_changes_nothing(patch: Any) -> None:
    before = _CFG.model_dump(mode="json")
    try:
        new = apply_live_patch(_CFG, patch)
    except ConfigError as e:
        assert _paths_named(e), e.errors
        assert _CFG.model_dump(mode="json") == before
        return
    assert _CFG.model_dump(mode="json") == before  # the old config object is never touched
    after = new.model_dump(mode="json")
    # only the hot sections may differ, and the cold caps still hold
    assert {k for k in before if before[k] != after[k]} <= {"strategy", "risk"}
    assert new.strategy.size_min <= new.exchange.max_order_btc
    assert Decimal(new.strategy.max_inventory_btc) <= new.exchange.max_inventory_btc
