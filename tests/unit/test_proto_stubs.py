"""The committed generated stubs match the .proto files."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_generated_stubs_are_fresh(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    subprocess.run(
        ["bash", str(repo_root / "scripts" / "gen_proto.sh"), str(out)],
        check=True, env={**os.environ, "PYTHON": sys.executable},
    )
    generated = sorted(p.name for p in (out / "hodei_api" / "v1").iterdir())
    committed_dir = repo_root / "proto" / "hodei_api" / "v1"
    assert generated, "protoc generated nothing"
    stale = [
        name for name in generated
        if not (committed_dir / name).exists()
        or not filecmp.cmp(out / "hodei_api" / "v1" / name, committed_dir / name, shallow=False)
    ]
    assert not stale, f"stale stubs, run scripts/gen_proto.sh: {stale}"
    shutil.rmtree(out)
