"""YAML → pydantic config. Deep merge of base + override, unknown keys refused, live patches validated
whole."""

from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

SIZE_GRID = Decimal("0.00000001")  # bitFlyer sizes carry 8 decimals
HOT_SECTIONS = ("strategy", "risk")  # the only sections a running bot may change
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def _unit(unit: str) -> dict[str, JsonValue]:
    """A field's unit, in its JSON schema (`"unit": "ms"`): the form and the plain-sentence errors read it."""
    return {"unit": unit}


class _FieldProblem(ValueError):
    """A cross-field rule broken in a model validator; `field` names the field (relative to that model) the
    error is reported under, so a form can show it beside the right input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _on_size_grid(v: Decimal) -> Decimal:
    try:
        on_grid = v % SIZE_GRID == 0
    except InvalidOperation:  # e.g. 1e400: too many digits to divide
        on_grid = False
    if not on_grid:
        raise ValueError("must be a multiple of 0.00000001 BTC")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: Any) -> Any:
        # pydantic's lax mode reads true as 1: `stall_T_ms: true` must be an error, not 1 ms
        if isinstance(v, bool) and cls.model_fields[info.field_name].annotation not in (bool, "bool"):
            raise ValueError("must be a number, not true/false")
        return v


class ExchangeConfig(_Model):
    name: Literal["bitflyer"] = "bitflyer"
    product_code: str = "FX_BTC_JPY"
    base_url: str = "https://api.bitflyer.com"
    ws_url: str = "wss://ws.lightstream.bitflyer.com/json-rpc"
    tick_size: Decimal = Field(default=Decimal("1"), gt=0, le=10_000)
    min_size: Decimal = Field(default=Decimal("0.001"), gt=0, le=1)
    # cold caps: a live patch of strategy.* can never go past them (they change only with a restart)
    max_order_btc: Decimal = Field(
        default=Decimal("0.1"), gt=0, le=100, description="largest order the bot may send"
    )
    max_inventory_btc: Decimal = Field(
        default=Decimal("1"), gt=0, le=1000, description="largest strategy.max_inventory_btc allowed"
    )
    # getcollateralhistory reason_code → what the row is, over the built-in mapping of the simulated venue's
    # codes (bot/types/exchange.py). bitFlyer does not document its codes: confirm them on a live account.
    collateral_reasons: dict[str, Literal["funding", "leverage_points", "trade", "ignore"]] = Field(
        default_factory=dict, max_length=100
    )
    # unknown codes are named once in the log and not booked until mapped: bitFlyer's codes are unconfirmed,
    # and booking one that is really trading PnL would count every losing close twice (a false kill); an
    # unknown credit must not look like profit either
    unknown_collateral_debit: Literal["holding_cost", "ignore"] = "ignore"
    unknown_collateral_credit: Literal["holding_cost", "ignore"] = "ignore"

    @field_validator("min_size", "max_order_btc", "max_inventory_btc")
    @classmethod
    def _on_size_grid(cls, v: Decimal) -> Decimal:
        return _on_size_grid(v)


class PybottersConfig(_Model):
    api_label: str = "bitflyer"
    timeout_sec: float = Field(default=10, gt=0)


class WsConfig(_Model):
    channels: list[str] = Field(min_length=1)


class StallStrategyConfig(_Model):
    stall_T_ms: int = Field(
        default=250,
        gt=0,
        le=HOUR_MS,
        description="best bid/ask unchanged this long = stalled",
        json_schema_extra=_unit("ms"),
    )
    min_spread_tick: int = Field(
        default=1,
        ge=1,
        le=10_000_000,
        description="strike only on a spread this wide",
        json_schema_extra=_unit("ticks"),
    )
    ttl_ms: int = Field(
        default=800,
        gt=0,
        le=HOUR_MS,
        description="cancel a stall order after this long",
        json_schema_extra=_unit("ms"),
    )
    max_reverse_ticks: int = Field(
        default=2,
        ge=1,
        le=10_000_000,
        description="close a position the market moved this far against",
        json_schema_extra=_unit("ticks"),
    )
    size_min: Decimal = Field(
        default=Decimal("0.001"),
        gt=0,
        le=100,
        description="size of each stall order",
        json_schema_extra=_unit("BTC"),
    )
    max_inventory_btc: Decimal = Field(
        default=Decimal("0.2"),
        gt=0,
        le=1000,
        description="largest position held",
        json_schema_extra=_unit("BTC"),
    )
    quote_mode: Literal["mid", "inside"] = Field(
        default="mid", description="quote around the mid or inside the best"
    )
    quote_offset_ticks: int = Field(
        default=1, ge=0, le=10_000_000, description="distance of the quotes", json_schema_extra=_unit("ticks")
    )
    cancel_on_best_change: bool = Field(default=True, description="cancel stall orders when the best moves")
    max_hold_ms: int = Field(
        default=0,
        ge=0,
        le=DAY_MS,
        description="close a position held this long; 0 = off",
        json_schema_extra=_unit("ms"),
    )
    stale_after_ms: int = Field(
        default=2000,
        gt=0,
        le=HOUR_MS,
        description="no board message this long = stale feed",
        json_schema_extra=_unit("ms"),
    )
    # the adverse move is measured from the far best ("best", the seed's rule) or from the mid ("mid")
    reverse_ref: Literal["best", "mid"] = Field(
        default="best", description="adverse move measured from the far best or from the mid"
    )

    @field_validator("size_min", "max_inventory_btc")
    @classmethod
    def _on_size_grid(cls, v: Decimal) -> Decimal:
        return _on_size_grid(v)

    @model_validator(mode="after")
    def _inventory_holds_one_order(self) -> StallStrategyConfig:
        if self.max_inventory_btc < self.size_min:
            raise _FieldProblem(
                "max_inventory_btc",
                f"max_inventory_btc ({self.max_inventory_btc}) must be >= size_min ({self.size_min})",
            )
        return self


class RiskConfig(_Model):
    daily_pnl_jpy: Decimal = Field(
        default=Decimal("-30000"),
        lt=0,
        ge=-1_000_000_000,
        description="kill when today's PnL <= this",
        json_schema_extra=_unit("JPY"),
    )
    max_dd_jpy: Decimal = Field(
        default=Decimal("-20000"),
        lt=0,
        ge=-1_000_000_000,
        description="kill when drawdown <= this",
        json_schema_extra=_unit("JPY"),
    )
    trading_day_tz: str = Field(default="Asia/Tokyo", description="time zone of the trading day (IANA name)")
    min_keep_rate: Decimal = Field(
        default=Decimal("1.5"),
        ge=0,
        le=1000,
        description="block entries while the venue's keep_rate is below this (1.5 = 150 %; 0 = off)",
    )
    kill_on_margin_call: bool = Field(default=True, description="kill (flatten) when the venue calls margin")

    @field_validator("trading_day_tz")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as e:  # OSError: a directory such as "America"
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class RunnerConfig(_Model):
    start_state: Literal["running", "stopped"] = "running"
    reconcile_interval_sec: float = Field(default=30, gt=0)
    board_state_poll_sec: float = Field(default=10, gt=0, description="getboardstate poll (public REST)")
    state_file: str = "logs/state.json"
    order_rate_per_min: int = Field(default=50, ge=1, le=100)
    private_rate_per_5min: int = Field(default=400, ge=1, le=500)
    account_poll_sec: float = Field(
        default=30, ge=1, le=3600, description="getcollateral + getcollateralhistory poll (private REST)"
    )


class PreflightConfig(_Model):
    """Thresholds of the checks run before the first start of a live or paper session."""

    max_clock_skew_sec: float = Field(
        default=5, gt=0, le=300, description="largest difference to the exchange's clock accepted"
    )
    min_free_mb: int = Field(default=500, ge=1, le=1_000_000, description="free space the log folder needs")
    maintenance_warn_min: int = Field(
        default=30, ge=0, le=1440, description="warn when the daily maintenance starts sooner than this"
    )
    min_rate_remaining: int = Field(
        default=50, ge=0, le=500, description="X-RateLimit-Remaining below this is a warning (0: an error)"
    )


class LoggingConfig(_Model):
    dir: str = "logs"
    rotation: str = "10 MB"
    retention: str = "7 days"
    level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    sse_hz: float = Field(default=8, gt=0, le=20)
    max_connections: int = Field(default=100, ge=8, le=10_000, description="open web connections at most")
    header_timeout_sec: float = Field(
        default=10, gt=0, le=300, description="a connection must send a whole request head this soon"
    )
    max_streams: int = Field(default=20, ge=1, le=1000, description="open dashboard event streams at most")


class RecordConfig(_Model):
    dir: str | None = Field(
        default=None, description="write the public feed to hourly tapes here (off by default; --record DIR)"
    )
    retention_hours: float = Field(
        default=168, gt=0, le=24 * 3650, description="tapes older than this are deleted"
    )


class ResearchConfig(_Model):
    results_dirs: list[str] = Field(
        default_factory=lambda: ["runs", "sweeps"],
        max_length=20,
        description="folders whose replay/sweep results the Research page lists (--out of replay and sweep)",
    )


class NotifyConfig(_Model):
    urls: list[SecretStr] = Field(
        default_factory=list, description="apprise URLs (also STST_NOTIFY); they hold tokens: never shown"
    )
    min_interval_s: float = Field(
        default=60,
        ge=0,
        le=86_400,
        description="at most one message of a kind this often (a kill always goes)",
    )
    down_after_s: float = Field(
        default=30, gt=0, le=3600, description="market data down this long before the phone is told"
    )


class SimConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    seed: int = 1
    api_key: str = "SIM_KEY"
    api_secret: SecretStr = SecretStr("SIM_SECRET")
    start_mid: int = Field(default=13_600_000, gt=0)
    levels_per_side: int = Field(default=300, ge=10, le=5000)
    snapshot_interval_ms: int = Field(default=5000, gt=0)
    diff_rate_hz: float = Field(default=7.3, gt=0)
    missed_delete_rate: float = Field(default=0.02, ge=0, le=1)
    activity: float = Field(default=1.0, gt=0)
    collateral_jpy: int = Field(default=10_000_000, ge=0, description="each account's starting collateral")
    leverage: int = Field(default=2, ge=1)
    minute_ms: int = Field(default=60_000, gt=0, description="how long one minute_to_expire minute lasts")
    rate_limits: bool = True
    rate_limit_http_status: int = Field(
        default=429, ge=400, le=599, description="bitFlyer's is not documented"
    )
    auth_window_sec: int = Field(default=300, gt=0, description="accepted ACCESS-TIMESTAMP / ws auth skew")
    preopen_seconds: float = Field(default=120, ge=0, description="itayose after a maintenance window")
    ws_heartbeat_sec: float = Field(default=15, gt=0, description="protocol ping interval")
    # holding costs, charged to open positions on the venue's wall clock
    funding_rate: Decimal = Field(
        default=Decimal("0.0001"), ge=-0.01, le=0.01, description="per settlement; longs pay a positive rate"
    )
    leverage_point_rate: Decimal = Field(
        default=Decimal("0.0004"), ge=0, le=0.01, description="of the position's notional, once a day"
    )
    funding_hours_utc: list[int] = Field(default=[5, 13, 21], max_length=24)
    leverage_point_hour_utc: int = Field(default=15, ge=0, le=23, description="15:00 UTC = 00:00 JST")

    @field_validator("funding_hours_utc")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        if any(not 0 <= h <= 23 for h in v):
            raise ValueError("hours must be 0..23")
        return sorted(set(v))


class AppConfig(_Model):
    env: Literal["sim", "paper", "live"] = "sim"
    exchange: ExchangeConfig = ExchangeConfig()
    pybotters: PybottersConfig = PybottersConfig()
    ws: WsConfig
    strategy: StallStrategyConfig = StallStrategyConfig()
    risk: RiskConfig = RiskConfig()
    runner: RunnerConfig = RunnerConfig()
    preflight: PreflightConfig = PreflightConfig()
    logging: LoggingConfig = LoggingConfig()
    server: ServerConfig = ServerConfig()
    notify: NotifyConfig = NotifyConfig()
    record: RecordConfig = RecordConfig()
    research: ResearchConfig = ResearchConfig()
    sim: SimConfig = SimConfig()

    @model_validator(mode="after")
    def _sizes_fit_exchange(self) -> AppConfig:
        st, ex = self.strategy, self.exchange
        if st.size_min < ex.min_size:
            raise _FieldProblem(
                "strategy.size_min",
                f"strategy.size_min ({st.size_min}) is below exchange.min_size ({ex.min_size})",
            )
        if st.size_min > ex.max_order_btc:
            raise _FieldProblem(
                "strategy.size_min",
                f"strategy.size_min ({st.size_min}) is above exchange.max_order_btc "
                f"({ex.max_order_btc}), the cap set at start",
            )
        if st.max_inventory_btc > ex.max_inventory_btc:
            raise _FieldProblem(
                "strategy.max_inventory_btc",
                f"strategy.max_inventory_btc ({st.max_inventory_btc}) is above "
                f"exchange.max_inventory_btc ({ex.max_inventory_btc}), the cap set at start",
            )
        return self


class FieldError(BaseModel):
    """One refused field: dotted path and a sentence a trader can act on."""

    field: str
    message: str


class ConfigError(Exception):
    """A config that cannot be used; carries every problem found, each with its field path."""

    def __init__(self, errors: list[FieldError], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: " + "; ".join(f"{e.field}: {e.message}" for e in errors))


def describe_config_error(e: ConfigError) -> str:
    """Every problem, one per line with its field path: what the command-line tools print before exiting 1."""
    return "\n".join(
        [f"invalid config ({e.source}):", *(f"  {err.field}: {err.message}" for err in e.errors)]
    )


class _DecimalLoader(yaml.SafeLoader):
    """YAML loader that reads floats as exact Decimals (0.001 stays 0.001, not 0.001000000000000000020816…)
    and refuses duplicate keys (YAML forbids them; PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_decimal(loader: _DecimalLoader, node: yaml.ScalarNode) -> Decimal | float:
    text = loader.construct_scalar(node).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:  # .inf, .nan, 1:30.5 (sexagesimal): let validation judge the float
        return loader.construct_yaml_float(node)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([FieldError(field="<file>", message=f"config file not found: {p}")], str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            [FieldError(field="<file>", message=f"cannot read config file: {e}")], str(p)
        ) from e
    try:
        data = yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError([FieldError(field="<file>", message=f"invalid YAML: {e}")], str(p)) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([FieldError(field="<file>", message="top level must be a mapping")], str(p))
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins; nested mappings merge key by key; lists and scalars are replaced whole."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: null deletes a key, mappings merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def errors_from_validation(e: ValidationError) -> list[FieldError]:
    out = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        problem = err.get("ctx", {}).get("error")
        if isinstance(problem, _FieldProblem):  # a cross-field rule: report it under the field it names
            loc.append(problem.field)
        path = ".".join(loc) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(FieldError(field=path, message=msg.removeprefix("Value error, ")))
    return out


def field_info(path: str) -> FieldInfo | None:
    """The pydantic FieldInfo of a dotted config path ('strategy.stall_T_ms'), or None."""
    model: type[BaseModel] = AppConfig
    info = None
    for part in path.split("."):
        info = model.model_fields.get(part)
        if info is None:
            return None
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            model = nested
    return info


def field_unit(info: FieldInfo | None) -> str:
    extra = None if info is None else info.json_schema_extra
    unit = extra.get("unit") if isinstance(extra, dict) else None
    return f" {unit}" if isinstance(unit, str) else ""


def _number(v: Any) -> str:
    return format(v, "f") if isinstance(v, Decimal) else str(v)


def _amount(v: Any, unit: str) -> str:
    """'1 tick', '2 ticks', '0 ms'."""
    text = _number(v)
    if text in ("1", "-1") and unit == " ticks":
        unit = " tick"
    return text + unit


def plain_sentence(path: str, err_type: str, ctx: dict[str, Any], msg: str) -> str:
    """One validation problem as a sentence a trader reads: 'stall_T_ms must be at least 1 ms' rather than
    pydantic's 'Input should be greater than 0'."""
    info = field_info(path)
    name = path.rsplit(".", 1)[-1]
    unit = field_unit(info)
    whole = info is not None and info.annotation is int
    if err_type == "greater_than":
        gt = ctx.get("gt", 0)
        return (
            f"{name} must be at least {_amount(int(gt) + 1, unit)}"
            if whole
            else f"{name} must be more than {_number(gt)}{unit}"
        )
    if err_type == "greater_than_equal":
        return f"{name} must be at least {_amount(ctx.get('ge'), unit)}"
    if err_type == "less_than":
        lt = ctx.get("lt", 0)
        return (
            f"{name} must be at most {_amount(int(lt) - 1, unit)}"
            if whole
            else f"{name} must be below {_number(lt)}{unit}"
        )
    if err_type == "less_than_equal":
        return f"{name} must be at most {_amount(ctx.get('le'), unit)}"
    if err_type in ("int_parsing", "int_type", "int_from_float"):
        return f"{name} must be a whole number{unit and ' of' + unit}"
    if err_type in ("decimal_parsing", "decimal_type", "float_parsing", "float_type"):
        return f"{name} must be a number{unit and ' of' + unit}"
    if err_type == "finite_number":
        return f"{name} must be a finite number"
    if err_type in ("decimal_max_places", "decimal_max_digits", "decimal_whole_digits"):
        return f"{name} has too many digits"
    if err_type == "literal_error":
        return f"{name} must be one of: {ctx.get('expected', '').replace(' or ', ', ')}".replace("'", "")
    if err_type in ("bool_parsing", "bool_type"):
        return f"{name} must be true or false"
    if err_type in ("string_type", "string_too_long", "string_too_short"):
        return f"{name} must be text"
    if err_type == "extra_forbidden":
        return "unknown key"  # as for an unknown section: the field path names it
    if msg.startswith("must "):  # our own validators already speak in sentences about the field
        return f"{name} {msg}"
    return msg


def validate_config(data: dict[str, Any], source: str = "config", *, plain: bool = False) -> AppConfig:
    """Validate a whole config; ConfigError with every problem. `plain`: each problem as a sentence (the form
    and PATCH /config), else pydantic's own words (the config file checks)."""
    try:
        return AppConfig.model_validate(data)
    except ValidationError as e:
        errors = errors_from_validation(e)
        if plain:
            errors = [
                FieldError(
                    field=fe.field,
                    message=plain_sentence(fe.field, err["type"], err.get("ctx", {}), fe.message),
                )
                for fe, err in zip(errors, e.errors(), strict=True)
            ]
        raise ConfigError(errors, source) from None


def load_app_config(base_path: str | Path, override_path: str | Path | None = None) -> AppConfig:
    """Read base, deep-merge the override (a missing override file is an error), validate the whole."""
    data = _read_yaml(base_path)
    source = str(base_path)
    if override_path is not None:
        data = deep_merge(data, _read_yaml(override_path))
        source = f"{base_path} + {override_path}"
    return validate_config(data, source)


def apply_live_patch(cfg: AppConfig, patch: Any) -> AppConfig:
    """Return a new config with a merge patch of strategy.* / risk.* applied, or raise ConfigError with every
    problem. `cfg` itself is never modified (models are frozen), so a refused patch changes nothing."""
    if not isinstance(patch, dict):
        raise ConfigError([FieldError(field="<root>", message="patch must be a JSON object")], "patch")
    if not patch:
        raise ConfigError([FieldError(field="<root>", message="empty patch")], "patch")
    errors = []
    for section, body in patch.items():
        if section not in HOT_SECTIONS:
            known = section in AppConfig.model_fields
            errors.append(
                FieldError(
                    field=str(section),
                    message="restart required: only strategy.* and risk.* can change while running"
                    if known
                    else "unknown key",
                )
            )
        elif not isinstance(body, dict):
            errors.append(FieldError(field=str(section), message="must be an object of fields to change"))
    if errors:
        raise ConfigError(errors, "patch")
    current = cfg.model_dump(mode="python")
    merged = merge_patch(current, patch)
    return validate_config(merged, "patch", plain=True)


def redacted_dump(cfg: AppConfig) -> dict[str, Any]:
    """The config as JSON-able data with secrets masked: safe to print, log or return over HTTP."""
    data = cfg.model_dump(mode="json")
    data["sim"]["api_secret"] = "**********"
    return data


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`strategy.stall_T_ms=400` → (["strategy", "stall_T_ms"], 400): a dotted key and a YAML scalar (floats
    as exact Decimals). Raises ValueError with a sentence when the text is not `a.b=value`."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(p.strip() for p in path):
        raise ValueError(f"{text!r}: expected section.key=value, e.g. strategy.stall_T_ms=400")
    try:
        value = yaml.load(raw.strip(), Loader=_DecimalLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ValueError(f"{text!r}: the value is not a YAML scalar ({e})") from None
    if isinstance(value, dict | list):
        raise ValueError(f"{text!r}: the value must be a single number, word or boolean")
    return [p.strip() for p in path], value


def load_app_config_with(
    base_path: str | Path, override_path: str | Path | None = None, assignments: list[str] | None = None
) -> AppConfig:
    """`load_app_config` plus `section.key=value` assignments applied last (replay and sweep's `--set`); an
    unknown key or a bad value is a ConfigError naming the field."""
    data = _read_yaml(base_path)
    source = str(base_path)
    if override_path is not None:
        data = deep_merge(data, _read_yaml(override_path))
        source = f"{base_path} + {override_path}"
    for text in assignments or []:
        try:
            path, value = parse_assignment(text)
        except ValueError as e:
            raise ConfigError([FieldError(field="--set", message=str(e))], source) from None
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {} if nxt is None else nxt
            if not isinstance(nxt, dict):
                raise ConfigError([FieldError(field=".".join(path), message="not a section")], source)
            node = nxt
        node[path[-1]] = value
        source = f"{source} + {text}"
    return validate_config(data, source)
