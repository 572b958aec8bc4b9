"""Real disk faults for the soak run: a full filesystem, fsync errors, a read-only inbox.

They need mounts, so the run enters a private mount namespace first
(``unshare --mount``, as root): whatever it mounts is invisible to the rest of
the machine and disappears with it. Inside, the sessions' directory
(``$HOME/sessions``: every store) and each session's inbox are ext4
filesystems on loop devices, whose image files live on small tmpfs:

- *full*: a filler file takes every free block of the ext4 (ENOSPC on write);
- *fsync errors* (inboxes): the tmpfs under the inbox images is shrunk to
  what it holds, so the kernel cannot write back new blocks: ``write``
  succeeds into the page cache and ``fsync`` fails (ENOSPC/EIO), as on a
  failing disk;
- *inbox read-only*: the inbox is bind-mounted onto itself read-only (as root,
  permission bits would not stop a write; a read-only mount does).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread

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


async def _ext4(image: Path, size: int, target: Path) -> None:
    """A fresh ext4 in a sparse image, loop-mounted at ``target``.

    No journal: a journalled ext4 aborts its journal at the first failed
    write-back and stays read-only until remounted, which would turn a
    transient fsync error into a dead disk. No blocks reserved for root either:
    the harness runs as root, and so may serve.
    """
    with image.open("wb") as fh:
        fh.truncate(size)
    await _run("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image))
    await anyio.to_thread.run_sync(partial(target.mkdir, parents=True, exist_ok=True))
    await _run("mount", "-o", "loop,errors=continue", str(image), str(target))
    await anyio.to_thread.run_sync(target.chmod, 0o700)


def _fill(root: Path) -> int:
    """Take every free block of the filesystem at ``root``; the bytes taken."""
    stat = os.statvfs(root)
    size = stat.f_bfree * stat.f_frsize
    fd = os.open(root / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
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


class SessionDisk:
    """The sessions' stores on one breakable filesystem, each inbox on a breakable one of its own.

    Stores and inboxes are apart so that fsync errors can be given to the
    inboxes alone: under SQLite, write-back that fails and drops pages
    corrupts the database file itself ("database disk image is malformed"),
    which no sender can work around, and the store is then unusable until it is
    rebuilt. A full disk and a read-only inbox reach both.
    """

    def __init__(self, base: Path, sessions: Path, names: Sequence[str]) -> None:
        self.stores_tmpfs = base / "disk-stores"
        self.inbox_tmpfs = base / "disk-inboxes"
        self.sessions = sessions
        self.inboxes = [sessions / name / "inbox" for name in names]
        self.read_only: list[Path] = []
        self.mounted: list[Path] = []

    async def mount(self) -> None:
        """Two tmpfs, ext4 images on them, loop-mounted as the sessions' folder and each inbox."""
        for tmpfs in (self.stores_tmpfs, self.inbox_tmpfs):
            tmpfs.mkdir(parents=True, exist_ok=True)
            await _run("mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE}", "soak-tmpfs", str(tmpfs))
            self.mounted.append(tmpfs)
        await _ext4(self.stores_tmpfs / "sessions.img", _IMAGE_SIZE, self.sessions)
        self.mounted.append(self.sessions)
        for n, inbox in enumerate(self.inboxes):
            await _ext4(self.inbox_tmpfs / f"inbox-{n}.img", _IMAGE_SIZE // 4, inbox)
            self.mounted.append(inbox)

    async def unmount(self) -> None:
        """Undo every mount, innermost first."""
        await self.writable_inboxes()
        for path in reversed(self.mounted):
            await _run("umount", "-l", str(path))
        self.mounted.clear()

    def fill(self) -> int:
        """Take every free block of every one of the filesystems; the bytes taken."""
        return sum(_fill(root) for root in (self.sessions, *self.inboxes))

    def unfill(self) -> None:
        """Give the space back."""
        for root in (self.sessions, *self.inboxes):
            (root / ".filler").unlink(missing_ok=True)

    async def break_fsync(self) -> None:
        """Free blocks lose their backing (fstrim punches holes), then the tmpfs under the inbox images
        shrinks to what they hold: no block can be written back that is not already there."""
        for inbox in self.inboxes:
            await _run("fstrim", str(inbox))
        held = sum(os.stat(p).st_blocks * 512 for p in self.inbox_tmpfs.glob("*.img"))
        await _run("mount", "-o", f"remount,size={held}", str(self.inbox_tmpfs))

    async def heal_fsync(self) -> None:
        """Give the images room again."""
        await _run("mount", "-o", f"remount,size={_TMPFS_SIZE}", str(self.inbox_tmpfs))

    async def read_only_inbox(self, inbox: Path) -> None:
        """Bind-mount ``inbox`` onto itself, read-only."""
        await _run("mount", "--bind", str(inbox), str(inbox))
        await _run("mount", "-o", "remount,bind,ro", str(inbox))
        self.read_only.append(inbox)

    async def writable_inboxes(self) -> None:
        """Remove the read-only bind mounts."""
        while self.read_only:
            await _run("umount", "-l", str(self.read_only.pop()))
