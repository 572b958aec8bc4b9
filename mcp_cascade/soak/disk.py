"""Real disk faults for the soak run: a full filesystem, fsync errors, a read-only inbox.

They need mounts, so the run enters a private mount namespace first
(``unshare --mount``, as root): whatever it mounts is invisible to the rest of
the machine and disappears with it. Inside, the sessions' directory
(``$HOME/sessions``: every store and inbox) is an ext4 filesystem on a loop
device, whose image file lives on a small tmpfs:

- *full*: a filler file takes every free block of the ext4 (ENOSPC on write);
- *fsync errors*: the tmpfs under the image is shrunk to what it holds, so
  the kernel cannot write back new blocks: ``write`` succeeds into the page
  cache and ``fsync`` fails (ENOSPC/EIO), as on a failing disk (the ext4 has
  no journal: with one, the first failed write-back aborts the journal and the
  filesystem stays read-only until someone remounts it);
- *inbox read-only*: the inbox is bind-mounted onto itself read-only (as root,
  permission bits would not stop a write; a read-only mount does).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import anyio

NAMESPACE_MARK = "CASCADE_SOAK_NAMESPACE"
_TMPFS_SIZE = 512 * 1024 * 1024
_IMAGE_SIZE = 256 * 1024 * 1024


def mounts_unavailable() -> str | None:
    """Why disk faults cannot be injected here, or None when they can."""
    if os.environ.get(NAMESPACE_MARK) != "1":
        return "not in a private mount namespace (needs root and unshare)"
    for tool in ("mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def enter_namespace(argv: list[str]) -> None:
    """Re-run this command in a private mount namespace (does not return), when root and able to.

    Returns without doing anything when already inside one or when it cannot.
    """
    if os.environ.get(NAMESPACE_MARK) == "1" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return
    os.environ[NAMESPACE_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(
            "unshare",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-m",
                "mcp_cascade",
                *argv,
            ],
        )
    except OSError:
        os.environ.pop(NAMESPACE_MARK, None)


async def _run(*command: str) -> None:
    result = await anyio.run_process(list(command), check=False)
    if result.returncode != 0:
        raise OSError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace').strip()}")


class SessionDisk:
    """The sessions' directory on its own small, breakable filesystem."""

    def __init__(self, base: Path, sessions: Path) -> None:
        self.base = base / "disk"
        self.image = self.base / "sessions.img"
        self.sessions = sessions
        self.filler = sessions / ".filler"
        self.read_only: list[Path] = []
        self.mounted: list[Path] = []

    async def mount(self) -> None:
        """tmpfs, an ext4 image on it, loop-mounted as the sessions' directory."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.sessions.mkdir(parents=True, exist_ok=True)
        await _run("mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE}", "soak-tmpfs", str(self.base))
        self.mounted.append(self.base)
        with self.image.open("wb") as fh:
            fh.truncate(_IMAGE_SIZE)
        # No journal: a journalled ext4 aborts its journal at the first failed write-back and stays
        # read-only until it is remounted, which would turn a transient fsync error into a dead disk.
        # No blocks reserved for root either: the harness runs as root, and so may serve.
        await _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(self.image))
        await _run("mount", "-o", "loop,errors=continue", str(self.image), str(self.sessions))
        self.mounted.append(self.sessions)
        self.sessions.chmod(0o700)

    async def unmount(self) -> None:
        """Undo every mount, innermost first."""
        await self.writable_inboxes()
        for path in reversed(self.mounted):
            await _run("umount", "-l", str(path))
        self.mounted.clear()

    async def fill(self) -> int:
        """Take every free block of the filesystem; returns the bytes taken."""
        stat = os.statvfs(self.sessions)
        size = stat.f_bfree * stat.f_frsize
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while size > 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError:
                    size -= 1 << 20  # metadata took a little: ask for slightly less
        finally:
            os.close(fd)
        return max(size, 0)

    def unfill(self) -> None:
        """Give the space back."""
        self.filler.unlink(missing_ok=True)

    async def break_fsync(self) -> None:
        """Shrink the tmpfs under the image to what it holds: new blocks can no longer be written back."""
        held = os.stat(self.image).st_blocks * 512
        await _run("mount", "-o", f"remount,size={held + (256 << 10)}", str(self.base))

    async def heal_fsync(self) -> None:
        """Give the image room again."""
        await _run("mount", "-o", f"remount,size={_TMPFS_SIZE}", str(self.base))

    async def read_only_inbox(self, inbox: Path) -> None:
        """Bind-mount ``inbox`` onto itself, read-only."""
        await _run("mount", "--bind", str(inbox), str(inbox))
        await _run("mount", "-o", "remount,bind,ro", str(inbox))
        self.read_only.append(inbox)

    async def writable_inboxes(self) -> None:
        """Remove the read-only bind mounts."""
        while self.read_only:
            await _run("umount", "-l", str(self.read_only.pop()))
