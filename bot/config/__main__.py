"""`python -m bot.config check BASE [OVERRIDE]`: print the merged config (secrets masked) or every error, exit
1."""

from __future__ import annotations

import argparse
import sys

import yaml

from bot.config.loader import ConfigError, describe_config_error, load_app_config, redacted_dump


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.config")
    sub = ap.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="validate and print the merged config")
    chk.add_argument("base")
    chk.add_argument("override", nargs="?")
    args = ap.parse_args(argv)
    try:
        cfg = load_app_config(args.base, args.override)
    except ConfigError as e:
        print(describe_config_error(e), file=sys.stderr)
        return 1
    print(yaml.safe_dump(redacted_dump(cfg), sort_keys=False, allow_unicode=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
