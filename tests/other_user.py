"""Run an attacker's commands as a second local account (root switches uid with ``setpriv``).

The attacker uses only ``/bin/sh``, ``ps`` and a Python standard library it can
run, as any other account on the machine could. Tests that need it are
skipped, with the reason, where the test process cannot switch uids.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

import pytest

ATTACKER_UID = 4242


def _why_not() -> str:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "switching to a second uid needs root (CI runs these as root)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    if subprocess.run(attacker_argv("true"), capture_output=True, check=False).returncode != 0:
        return "this root cannot switch uids (no CAP_SETUID in this container)"
    return ""


def attacker_argv(*argv: str) -> list[str]:
    """``argv`` run as the attacker's uid and gid, with no supplementary groups."""
    uid = str(ATTACKER_UID)
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


_WHY_NOT = _why_not()
needs_second_uid = pytest.mark.skipif(bool(_WHY_NOT), reason=_WHY_NOT or "a second uid is available")


@functools.cache
def attacker_python() -> str:
    """A Python the other account can run (the standard library is all it uses); skip if there is none."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        ran = subprocess.run(attacker_argv(candidate, "-c", "pass"), capture_output=True, check=False)
        if ran.returncode == 0:
            return candidate
    pytest.skip("no Python interpreter that a second account may run")


def as_attacker(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell ``script`` as the attacker; raises if it fails."""
    return subprocess.run(
        attacker_argv("/bin/sh", "-ec", script), check=True, capture_output=True, text=True, timeout=30
    )
