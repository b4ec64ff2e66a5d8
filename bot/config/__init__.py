from bot.config.loader import (
    AppConfig,
    ConfigError,
    FieldError,
    RiskConfig,
    StallStrategyConfig,
    apply_live_patch,
    load_app_config,
    redacted_dump,
)

__all__ = [
    "AppConfig",
    "ConfigError",
    "FieldError",
    "RiskConfig",
    "StallStrategyConfig",
    "apply_live_patch",
    "load_app_config",
    "redacted_dump",
]
