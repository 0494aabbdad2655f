"""hodeictl stands alone: it never imports the server or the agent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import hodeictl.app

# Not `hodeictl.__file__`: run from the repository root, the `hodeictl/` folder shadows the
# package as a namespace package (the editable finder still maps its submodules).
PACKAGE = Path(hodeictl.app.__file__).parent


def test_hodeictl_imports_neither_server_nor_agent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import importlib, json, pkgutil, sys
        import hodeictl.app
        walked = [m.name for m in pkgutil.walk_packages([{str(PACKAGE)!r}], "hodeictl.")]
        for name in walked:
            importlib.import_module(name)
        leaked = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("hodei_server", "hodei_agent")
        )
        print(json.dumps({{"walked": walked, "leaked": leaked}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert "hodeictl.commands.job" in report["walked"]
    assert report["leaked"] == []


def test_modules_stay_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines < 400, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_the_package_is_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
