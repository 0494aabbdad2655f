"""`python -m hodei_server`: the `hodei-server` command line (hodei_server.cli)."""

from __future__ import annotations

from hodei_server.cli.main import main

if __name__ == "__main__":
    main()
