"""What the agent does as PID 1 of a container: reap the orphans it inherits, and only
those through the Popen of a child it started itself."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, subprocess, time
from hodei_agent.procgroup import become_subreaper, reap_adopted
assert become_subreaper() is None  # orphans come to us, as to a container's PID 1
own = subprocess.Popen(["sh", "-c", "exit 5"])
for _ in range(3):  # each leaves an orphan (its parent exits at once) that ends soon
    subprocess.run(["setsid", "-f", "sleep", "0.2"], check=True)
time.sleep(0.6)
adopted = reap_adopted({own.pid: own})
try:
    os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
    left = "children left"
except ChildProcessError:
    left = "no children"
print(adopted, own.returncode, left)
"""


def test_orphans_are_reaped_and_our_own_childs_status_kept() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "5", "no", "children"]
