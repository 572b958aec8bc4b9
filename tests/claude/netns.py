"""Run async code inside a fresh loopback-only network namespace.

A network namespace belongs to a thread, not to a process: the code runs in a
new thread that leaves the test runner's network (``unshare(CLONE_NEWNET)``),
brings its own ``lo`` up and then runs its event loop there. Every socket that
loop opens, and every process it starts (the fake API, tmux, Claude Code and
the servers Claude Code spawns), lives in that namespace, where 127.0.0.1 is
the only address and nothing can leave the machine. The thread ends with the
code, so the namespace never leaks into the rest of the test run.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class Unavailable(Exception):
    """A prerequisite of the real-client tests is missing on this machine."""


def current_netns() -> str:
    """The calling thread's network namespace (``net:[inode]``)."""
    return str(Path("/proc/thread-self/ns/net").readlink())


def process_netns(pid: int) -> str:
    """Process ``pid``'s network namespace."""
    return str(Path(f"/proc/{pid}/ns/net").readlink())


def _leave_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise Unavailable(
            f"cannot create a network namespace (unshare(CLONE_NEWNET): {errno.errorcode.get(code, code)}); "
            "the real-client tests need root or CAP_SYS_ADMIN"
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise Unavailable(f"the new network namespace is not loopback-only: {interfaces}")


def run_isolated(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` in its own event loop inside a new loopback-only network namespace."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def thread() -> None:
        try:
            _leave_network()
            outcome.append(anyio.run(main))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    runner = threading.Thread(target=thread, name="netns")
    runner.start()
    runner.join()
    if failure:
        error = failure[0]
        # Task groups wrap a lone failure; the test's own assertion reads better unwrapped.
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error
    return outcome[0]
