"""The config loader (bot/config/loader.py) and `python -m bot.config check`, as a trader editing YAML files
and tuning the running bot would meet them."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.config.loader import (
    AppConfig,
    ConfigError,
    RiskConfig,
    StallStrategyConfig,
    apply_live_patch,
    load_app_config,
    redacted_dump,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "base.yml"


@pytest.fixture(scope="module")
def cfg() -> AppConfig:
    return load_app_config(BASE, ROOT / "configs" / "sim.yml")


def override(tmp_path: Path, text: str, name: str = "override.yml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def fields_of(e: ConfigError) -> list[str]:
    return [err.field for err in e.errors]


def run_check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.config", "check", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sim", "paper", "live"])
def test_base_plus_each_override_loads(mode: str) -> None:
    cfg = load_app_config(BASE, ROOT / "configs" / f"{mode}.yml")
    assert cfg.env == mode
    assert cfg.exchange.product_code == "FX_BTC_JPY"
    assert cfg.strategy.size_min >= cfg.exchange.min_size
    if mode == "live":
        assert cfg.runner.start_state == "stopped"  # a human presses start


def test_base_alone_loads() -> None:
    assert load_app_config(BASE).env == "sim"


def test_yaml_decimals_stay_exact(cfg: AppConfig) -> None:
    assert cfg.strategy.size_min == Decimal("0.001") and str(cfg.strategy.size_min) == "0.001"
    assert cfg.strategy.size_min != Decimal(0.001)  # not the binary float's 0.001000000000000000020816…
    assert str(cfg.strategy.max_inventory_btc) == "0.2"


def test_override_merges_deeply(tmp_path: Path) -> None:
    cfg = load_app_config(
        BASE, override(tmp_path, "strategy:\n  stall_T_ms: 400\nrisk:\n  max_dd_jpy: -5000\n")
    )
    assert cfg.strategy.stall_T_ms == 400 and cfg.strategy.ttl_ms == 800  # the rest of strategy kept
    assert cfg.risk.max_dd_jpy == Decimal("-5000") and cfg.risk.daily_pnl_jpy == Decimal("-30000")


def test_cli_check_prints_the_merged_config() -> None:
    res = run_check("configs/base.yml", "configs/paper.yml")
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["env"] == "paper"
    assert printed["strategy"]["stall_T_ms"] == 250
    assert Decimal(printed["strategy"]["size_min"]) == Decimal("0.001")
    assert printed["sim"]["api_secret"] == "**********" and "SIM_SECRET" not in res.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("strategy:\n  stall_T_ms: 0\n", "strategy.stall_T_ms: Input should be greater than 0"),
        ("strategy:\n  stall_t_ms: 300\n", "strategy.stall_t_ms: unknown key"),
        ("strategy: [1,\n", "<file>: invalid YAML"),
        ("strategy:\n  ttl_ms: 800\n  ttl_ms: 0\n", "found duplicate key 'ttl_ms'"),
        ("strategy:\n  stall_T_ms: .inf\n", "strategy.stall_T_ms: Input should be a finite number"),
    ],
    ids=["bad-value", "unknown-key", "invalid-yaml", "duplicate-key", "infinity"],
)
def test_cli_check_names_the_problem_and_exits_1(tmp_path: Path, text: str, expected: str) -> None:
    res = run_check("configs/base.yml", override(tmp_path, text))
    assert res.returncode == 1
    assert expected in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_cli_check_missing_override_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    res = run_check("configs/base.yml", missing)
    assert res.returncode == 1
    assert f"config file not found: {missing}" in res.stderr


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yml"
    bad.write_bytes("strategy:\n  quote_mode: mid\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_app_config(BASE, bad)
    assert fields_of(e.value) == ["<file>"] and "cannot read" in str(e.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_app_config(BASE, override(tmp_path, "strategy:\n  ttl_ms: 0\n  min_spread_tick: 0\nbogus: 1\n"))
    assert set(fields_of(e.value)) == {"strategy.ttl_ms", "strategy.min_spread_tick", "bogus"}


# ---- validation rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("strategy:\n  stall_T_ms: 0\n", "strategy.stall_T_ms", "greater than 0"),
        ("strategy:\n  stall_T_ms: -250\n", "strategy.stall_T_ms", "greater than 0"),
        ("strategy:\n  stall_T_ms: true\n", "strategy.stall_T_ms", "not true/false"),
        ("strategy:\n  stall_T_ms: 250.5\n", "strategy.stall_T_ms", "integer"),
        ("strategy:\n  ttl_ms: 0\n", "strategy.ttl_ms", "greater than 0"),
        ("strategy:\n  min_spread_tick: 0\n", "strategy.min_spread_tick", "greater than or equal to 1"),
        (
            "strategy:\n  size_min: 0.0005\n  max_inventory_btc: 0.2\n",
            "strategy.size_min",
            "exchange.min_size",
        ),
        ("strategy:\n  size_min: 0.0010000001\n", "strategy.size_min", "0.00000001"),
        ("strategy:\n  max_inventory_btc: 0.0005\n", "strategy.max_inventory_btc", "size_min"),
        ("strategy:\n  max_inventory_btc: 0.200000001\n", "strategy.max_inventory_btc", "0.00000001"),
        (
            "strategy:\n  quote_offset_ticks: -1\n",
            "strategy.quote_offset_ticks",
            "greater than or equal to 0",
        ),
        ("strategy:\n  quote_mode: outside\n", "strategy.quote_mode", "'mid' or 'inside'"),
        ("risk:\n  daily_pnl_jpy: 0\n", "risk.daily_pnl_jpy", "less than 0"),
        ("risk:\n  daily_pnl_jpy: 5000\n", "risk.daily_pnl_jpy", "less than 0"),
        ("risk:\n  max_dd_jpy: 0\n", "risk.max_dd_jpy", "less than 0"),
        ("risk:\n  trading_day_tz: Mars/Olympus\n", "risk.trading_day_tz", "unknown time zone"),
        ("risk:\n  trading_day_tz: America\n", "risk.trading_day_tz", "unknown time zone"),  # a tzdata folder
        ("exchange:\n  min_size: 0.002\n", "strategy.size_min", "exchange.min_size"),
        ("exchange:\n  min_size: 0.0000000001\n", "exchange.min_size", "0.00000001"),
        ("env: production\n", "env", "'sim', 'paper' or 'live'"),
    ],
)
def test_each_rule_names_its_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_app_config(BASE, override(tmp_path, text))
    assert fields_of(e.value) == [field]
    assert words in e.value.errors[0].message


@pytest.mark.parametrize(
    "text",
    [
        "strategy:\n  quote_offset_ticks: 0\n  min_spread_tick: 1\n",
        "strategy:\n  size_min: 0.001\n  max_inventory_btc: 0.001\n",  # one order fits exactly
        "strategy:\n  size_min: 0.00100001\n  max_inventory_btc: 0.01\n",  # on the 1e-8 grid
        "risk:\n  daily_pnl_jpy: -1\n  max_dd_jpy: -1\n  trading_day_tz: UTC\n",
    ],
)
def test_boundary_values_are_accepted(tmp_path: Path, text: str) -> None:
    load_app_config(BASE, override(tmp_path, text))


# ---- live patches ----------------------------------------------------------------------------------------
def test_good_patch_gives_a_new_config_and_leaves_the_original(cfg: AppConfig) -> None:
    before = cfg.model_dump()
    new = apply_live_patch(cfg, {"strategy": {"stall_T_ms": 400}, "risk": {"max_dd_jpy": -10000}})
    assert new.strategy.stall_T_ms == 400 and new.risk.max_dd_jpy == Decimal("-10000")
    assert new.strategy.ttl_ms == cfg.strategy.ttl_ms and new.env == cfg.env
    assert cfg.model_dump() == before and cfg.strategy.stall_T_ms == 250
    assert new.sim.api_secret.get_secret_value() == cfg.sim.api_secret.get_secret_value()


def test_one_bad_field_rejects_the_whole_patch(cfg: AppConfig) -> None:
    before = cfg.model_dump()
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, {"strategy": {"stall_T_ms": 400, "ttl_ms": 0}})
    assert fields_of(e.value) == ["strategy.ttl_ms"]
    assert cfg.model_dump() == before


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"strategy": {"stall_T_ms": 1e303}}, "strategy.stall_T_ms"),
        ({"strategy": {"stale_after_ms": 10**18}}, "strategy.stale_after_ms"),
        ({"strategy": {"ttl_ms": 3_600_001}}, "strategy.ttl_ms"),
        ({"strategy": {"max_hold_ms": 10**12}}, "strategy.max_hold_ms"),
        ({"strategy": {"max_reverse_ticks": 10**30}}, "strategy.max_reverse_ticks"),
        ({"risk": {"daily_pnl_jpy": "-1e400"}}, "risk.daily_pnl_jpy"),
        ({"strategy": {"size_min": 1000, "max_inventory_btc": 1000}}, "strategy.size_min"),
        ({"strategy": {"max_inventory_btc": "5"}}, "strategy.max_inventory_btc"),  # past the cold cap (1)
        (
            {"strategy": {"size_min": "0.2", "max_inventory_btc": "0.5"}},
            "strategy.size_min",
        ),  # past max_order_btc
    ],
)
def test_absurd_numbers_are_refused_whole_before_anything_is_applied(
    cfg: AppConfig, patch: dict[str, Any], field: str
) -> None:
    """Edge hardening 2: stall_T_ms 1e303 was applied and then broke every decision (OverflowError arming the
    timer); size_min 1000 was accepted and a 1,000 BTC order sent. Every number has a range, and the sizes
    a cold cap (exchange.max_order_btc / max_inventory_btc) that a live patch cannot raise."""
    before = cfg.model_dump()
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, patch)
    assert field in fields_of(e.value)
    assert cfg.model_dump() == before
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, {"exchange": {"max_order_btc": "1000"}})  # the caps are cold
    assert fields_of(e.value) == ["exchange"]


def test_cross_field_error_points_at_a_field(cfg: AppConfig) -> None:
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, {"strategy": {"max_inventory_btc": "0.0005"}})
    assert fields_of(e.value) == ["strategy.max_inventory_btc"]
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, {"strategy": {"size_min": "0.0005", "max_inventory_btc": "0.1"}})
    assert fields_of(e.value) == ["strategy.size_min"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"exchange": {"min_size": "0.01"}}, "exchange"),
        ({"env": "live"}, "env"),
        ({"sim": {"seed": 2}}, "sim"),
        ({"strategy": {"stall_T_ms": 300}, "server": {"port": 9000}}, "server"),
    ],
)
def test_cold_fields_need_a_restart(cfg: AppConfig, patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, patch)
    assert fields_of(e.value) == [field]
    assert "restart required" in e.value.errors[0].message
    assert cfg.strategy.stall_T_ms == 250 and cfg.env == "sim"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"strategy": {"stall_t_ms": 300}}, "strategy.stall_t_ms"),
        ({"risk": {"daily_loss": -1}}, "risk.daily_loss"),
        ({"strategyy": {"stall_T_ms": 300}}, "strategyy"),
    ],
)
def test_unknown_keys_are_refused(cfg: AppConfig, patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, patch)
    assert fields_of(e.value) == [field] and e.value.errors[0].message == "unknown key"


@pytest.mark.parametrize("patch", [{}, [], "stall_T_ms=300", {"strategy": 300}, {"strategy": None}])
def test_malformed_patches_are_refused(cfg: AppConfig, patch: Any) -> None:
    with pytest.raises(ConfigError):
        apply_live_patch(cfg, patch)


def test_patch_decimals_stay_exact(cfg: AppConfig) -> None:
    body = json.loads(
        '{"strategy": {"size_min": 0.002, "max_inventory_btc": 0.3}, "risk": {"max_dd_jpy": -0.1}}'
    )
    new = apply_live_patch(cfg, body)  # the floats a JSON body decodes to
    assert (new.strategy.size_min, new.strategy.max_inventory_btc) == (Decimal("0.002"), Decimal("0.3"))
    assert str(new.strategy.size_min) == "0.002" and str(new.risk.max_dd_jpy) == "-0.1"
    exact = apply_live_patch(cfg, json.loads('{"strategy": {"size_min": 0.001}}', parse_float=Decimal))
    assert str(exact.strategy.size_min) == "0.001"


def test_redacted_dump_masks_secrets(tmp_path: Path) -> None:
    cfg = load_app_config(BASE, override(tmp_path, "sim:\n  api_secret: my-very-own-secret\n"))
    dumped = json.dumps(redacted_dump(cfg))
    assert "my-very-own-secret" not in dumped and "SIM_SECRET" not in dumped
    assert redacted_dump(cfg)["sim"]["api_secret"] == "**********"
    assert "my-very-own-secret" not in repr(cfg) and "my-very-own-secret" not in str(
        cfg.model_dump(mode="json")
    )


# ---- property: a patch is applied whole or not at all ----------------------------------------------------
_HOT_FIELDS = {"strategy": StallStrategyConfig.model_fields, "risk": RiskConfig.model_fields}


def _typed_value(section: str, key: str) -> st.SearchStrategy[Any]:
    """A value of the field's own type: mostly plausible, sometimes one validation must refuse (negative,
    zero, off the 1e-8 grid, unknown zone)."""
    ann = _HOT_FIELDS[section][key].annotation
    if ann is int:
        return st.one_of(
            st.integers(min_value=1, max_value=5000), st.integers(min_value=-10, max_value=10**7)
        )
    if ann is bool:
        return st.booleans()
    if ann is Decimal and section == "risk":
        return st.one_of(
            st.integers(-100_000, -1).map(Decimal),
            st.decimals(min_value=-100_000, max_value=100_000, places=2),
        )
    if ann is Decimal:
        return st.one_of(
            st.integers(100_000, 50_000_000).map(lambda n: Decimal(n).scaleb(-8)),
            *(st.decimals(min_value=-10, max_value=10, places=p) for p in (0, 3, 8, 10)),
        )
    if key == "trading_day_tz":
        return st.sampled_from(["Asia/Tokyo", "UTC", "Europe/London", "Mars/Olympus", "America", ""])
    return st.sampled_from(["mid", "inside", "outside"])


_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def patches(draw: st.DrawFn) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    sections = draw(st.lists(st.sampled_from(["strategy", "risk"]), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 3)) == 0:  # now and then a section that cannot change while running
        sections.append(draw(st.sampled_from(["exchange", "env", "bogus"])))
    for section in sections:
        if section not in _HOT_FIELDS:
            patch[section] = draw(
                st.one_of(
                    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2), st.text(max_size=4)
                )
            )
            continue
        body: dict[str, Any] = {}
        keys = sorted(_HOT_FIELDS[section])
        for key in draw(st.lists(st.sampled_from([*keys, "not_a_field"]), max_size=3, unique=True)):
            typed = key != "not_a_field" and draw(st.integers(0, 9)) > 0
            body[key] = draw(_typed_value(section, key)) if typed else draw(_junk)
        patch[section] = body
    return patch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patch=patches())
def test_any_patch_is_applied_whole_or_refused_whole(cfg: AppConfig, patch: dict[str, Any]) -> None:
    before = cfg.model_dump()
    try:
        new = apply_live_patch(cfg, patch)
    except ConfigError as e:
        event("refused")
        assert e.errors, "a refusal names at least one field"
        assert all(err.field.split(".")[0] in patch or err.field == "<root>" for err in e.errors)
        assert cfg.model_dump() == before
        return
    event("applied")
    assert cfg.model_dump() == before
    assert set(patch) <= set(_HOT_FIELDS)
    AppConfig.model_validate(new.model_dump())  # the result is a config that validates on its own
    after = new.model_dump()
    for section, values in before.items():
        for key, old in values.items() if isinstance(values, dict) else [(None, values)]:
            changed = section in patch and key in patch[section]
            current = after[section] if key is None else after[section][key]
            if not changed:
                assert current == old, f"{section}.{key} changed without being patched"
            elif patch[section][key] is None:  # JSON merge patch: null resets to the default
                assert current == _HOT_FIELDS[section][key].default
            elif isinstance(patch[section][key], int | Decimal | str) and not isinstance(
                patch[section][key], bool
            ):
                if isinstance(current, int | Decimal) and not isinstance(current, bool):
                    assert Decimal(str(current)) == Decimal(str(patch[section][key]))


@pytest.mark.parametrize(
    ("patch", "field", "sentence"),
    [
        ({"strategy": {"stall_T_ms": 0}}, "strategy.stall_T_ms", "stall_T_ms must be at least 1 ms"),
        ({"strategy": {"ttl_ms": 3_600_001}}, "strategy.ttl_ms", "ttl_ms must be at most 3600000 ms"),
        (
            {"strategy": {"min_spread_tick": 0}},
            "strategy.min_spread_tick",
            "min_spread_tick must be at least 1 tick",
        ),
        ({"strategy": {"size_min": "0"}}, "strategy.size_min", "size_min must be more than 0 BTC"),
        (
            {"strategy": {"stall_T_ms": "soon"}},
            "strategy.stall_T_ms",
            "stall_T_ms must be a whole number of ms",
        ),
        (
            {"strategy": {"quote_mode": "far"}},
            "strategy.quote_mode",
            "quote_mode must be one of: mid, inside",
        ),
        ({"risk": {"max_dd_jpy": 5}}, "risk.max_dd_jpy", "max_dd_jpy must be below 0 JPY"),
        ({"risk": {"max_dd_jpy": "lots"}}, "risk.max_dd_jpy", "max_dd_jpy must be a number of JPY"),
    ],
)
def test_live_patch_errors_are_plain_sentences_with_units(
    cfg: AppConfig, patch: dict[str, Any], field: str, sentence: str
) -> None:
    with pytest.raises(ConfigError) as e:
        apply_live_patch(cfg, patch)
    assert [(fe.field, fe.message) for fe in e.value.errors] == [(field, sentence)]
