"""Which filesystem a path lives on, read from ``/proc/self/mountinfo`` (Linux).

The state store and the run lock behave differently on network filesystems: SQLite's WAL mode needs
a shared-memory index that only works when every process is on one host, and ``flock`` is emulated,
local-only or missing on NFS, Lustre and GPFS (SPEC 7, research hazard H6). Detection errs towards
"network": a false positive only costs SQLite speed (rollback journal instead of WAL), a false
negative can corrupt the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["NETWORK_FS_TYPES", "Mount", "fs_type", "is_network_fs", "parse_mountinfo"]

#: Filesystem types treated as shared between hosts (or otherwise unsafe for WAL and flock).
#: - ``nfs``, ``nfs4``: NFS (v4 reports ``nfs4``); no shared memory across clients, flock emulated.
#: - ``lustre``, ``gpfs``, ``beegfs``, ``panfs``, ``orangefs``, ``pvfs2``, ``wekafs``, ``quobyte``:
#:   parallel HPC filesystems, mounted on every node of a cluster.
#: - ``cifs``, ``smb3``, ``smbfs``: Windows / Samba shares.
#: - ``ceph``, ``glusterfs``, ``afs``, ``ncpfs``: other distributed filesystems.
#: - ``gfs2``, ``ocfs2``: shared-disk cluster filesystems (one block device, several hosts).
#: - ``9p``: WSL2's ``/mnt/c`` and VM host shares, where SQLite locking is known to misbehave.
#: - any ``fuse.*`` (``fuse.sshfs``, ``fuse.s3fs``, ``fuse.gcsfuse``, ``fuse.glusterfs``,
#:   ``fuse.ceph-fuse``...): user-space filesystems seldom implement shared mmap and locks well.
#:   ``fuseblk`` (ntfs-3g and other local block devices) is deliberately not included.
NETWORK_FS_TYPES: frozenset[str] = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "panfs",
        "orangefs",
        "pvfs2",
        "wekafs",
        "quobyte",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "afs",
        "ncpfs",
        "gfs2",
        "ocfs2",
        "9p",
    }
)

_MOUNTINFO = "/proc/self/mountinfo"


class Mount(NamedTuple):
    """One line of mountinfo: where a filesystem is mounted, and its type."""

    mount_point: str
    fs_type: str


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as octal escapes (\040...).
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of ``/proc/<pid>/mountinfo``; malformed lines are skipped.

    Each line reads ``id parent major:minor root MOUNT_POINT options [optional...] - TYPE source
    super-options``; the optional fields vary in number, so the type is found after the ``-``.

    Args:
        text: the file's content.

    Returns:
        The mounts in file order (later lines mount over earlier ones).
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) <= sep + 1 or len(fields) < 5:
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[sep + 1]))
    return mounts


def _contains(mount_point: str, path: str) -> bool:
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def fs_type(path: Path | str, mountinfo: str | None = None) -> str | None:
    """Return the filesystem type of the mount holding ``path``, or None when unknown.

    The path need not exist yet (the state folder is created after this check); symbolic links in
    its existing part are resolved, so a link into a network mount counts as network.

    Args:
        path: any path.
        mountinfo: the mountinfo text to use instead of ``/proc/self/mountinfo`` (tests).

    Returns:
        The type (``ext4``, ``nfs4``, ``fuse.sshfs``...), or None when not on Linux or unreadable.
    """
    if mountinfo is None:
        try:
            with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as fh:
                mountinfo = fh.read()
        except OSError:
            return None
    target = os.path.realpath(os.path.abspath(path))
    best: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        # ">=" so that a later mount on the same point (an over-mount) wins, as in the kernel.
        if _contains(mount.mount_point, target) and (
            best is None or len(mount.mount_point) >= len(best.mount_point)
        ):
            best = mount
    return best.fs_type if best else None


def is_network_fs(path: Path | str, mountinfo: str | None = None) -> bool:
    """Tell whether ``path`` is on a network or cluster filesystem (see `NETWORK_FS_TYPES`).

    Args:
        path: any path, existing or not.
        mountinfo: the mountinfo text to use instead of ``/proc/self/mountinfo`` (tests).

    Returns:
        True for a known network type or any ``fuse.*`` type; False otherwise, including when the
        type cannot be found (not Linux, ``/proc`` not mounted).
    """
    kind = fs_type(path, mountinfo)
    if kind is None:
        return False
    return kind in NETWORK_FS_TYPES or kind.startswith("fuse.")
