"""Run an attacker's commands as a second local account (root switches uid with ``setpriv``).

The attacker uses only ``/bin/sh`` and the system ``/usr/bin/python3`` standard
library, as any other account on the machine could. Tests that need it are
skipped, with the reason, where the test process cannot switch uids.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ATTACKER_UID = 4242
SYSTEM_PYTHON = "/usr/bin/python3"


def _why_not() -> str:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "switching to a second uid needs root (CI runs these as root)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return ""


needs_second_uid = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "n/a")


def attacker_argv(*argv: str) -> list[str]:
    """``argv`` run as the attacker's uid and gid, with no supplementary groups."""
    uid = str(ATTACKER_UID)
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def as_attacker(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell ``script`` as the attacker; raises if it fails."""
    return subprocess.run(
        attacker_argv("/bin/sh", "-ec", script), check=True, capture_output=True, text=True, timeout=30
    )
