"""`hodei-server`: run one server replica."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from hodei_plugins.provider import ProviderError
from hodei_server import config as config_mod
from hodei_server.app import serve
from hodei_server.errors import HodeiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hodei-server",
        description="Run a Hodei server. `hodei-server token create --help`: a bootstrap "
                    "token for an agent on another machine, or (--api) an API token such as "
                    "the first admin's; `hodei-server certs init --help`: a CA and a server "
                    "certificate for TLS; `hodei-server secret-key --help`: the key of the "
                    "built-in secret store.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051)")
    parser.add_argument("--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")
    parser.add_argument(
        "--ready-file", type=Path,
        help="write {\"pid\", \"address\"} as JSON here once serving (for scripts and tests)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def run_until_signalled(config: config_mod.ServerConfig, ready_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def on_ready(address: str) -> None:
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "address": address}))
            tmp.replace(ready_file)

    await serve(config, stop, on_ready=on_ready)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["token"]:
        from hodei_server.cli import token as tokencli

        return tokencli.main(argv[1:])
    if argv[:1] == ["certs"]:
        from hodei_server.cli import certs as certcli

        return certcli.main(argv[1:], "hodei-server certs")
    if argv[:1] == ["secret-key"]:
        from hodei_server.cli import secret_key as secretkeycli

        return secretkeycli.main(argv[1:])
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_mod.load(args.config)
        if args.listen:
            config.listen = args.listen
        if args.database_url:
            config.database_url = args.database_url
        asyncio.run(run_until_signalled(config, args.ready_file))
    except HodeiError as exc:
        if args.debug:
            raise
        print(f"hodei-server: {exc.message}", file=sys.stderr)
        return 1
    except ProviderError as exc:
        if args.debug:
            raise
        print(f"hodei-server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
