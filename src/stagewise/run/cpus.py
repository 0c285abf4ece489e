"""How many CPUs and how much memory this process may really use.

``os.cpu_count()`` is the machine's count; a Slurm job, a container or ``taskset`` grants fewer
(CPU affinity, cgroup quota), and running more workers than that only adds contention. Likewise
``MemAvailable`` is the machine's memory; a cgroup ``memory.max`` is what gets the job killed.
On Linux both cgroup v2 and v1 limits count, of the process's own cgroup (``/proc/self/cgroup``)
and its ancestors; elsewhere ``usable_cpus`` is the affinity or CPU count and ``available_memory_bytes`` is None.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["available_memory_bytes", "usable_cpus"]

_CGROUP = Path("/sys/fs/cgroup")
_SELF_CGROUP = Path("/proc/self/cgroup")
_UNLIMITED_V1 = 2**60  # cgroup v1 writes "no limit" as a huge page-rounded number


def usable_cpus() -> int:
    """CPUs this process may use: affinity, limited by the cgroup CPU quota; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        count = os.cpu_count() or 1
    quota = _cpu_quota(_CGROUP, _SELF_CGROUP)
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get: ``MemAvailable``, limited by the cgroup's headroom.

    Returns:
        bytes, or None when unknown (not Linux).
    """
    known = [
        v
        for v in (_mem_available(Path("/proc/meminfo")), _memory_headroom(_CGROUP, _SELF_CGROUP))
        if v is not None
    ]
    return max(0, min(known)) if known else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_dirs(root: Path, self_cgroup: Path, controller: str = "") -> Iterator[Path]:
    """The process's cgroup folder, then its ancestors up to the mount: all their limits apply.

    ``controller`` names a cgroup v1 hierarchy (``cpu``, ``memory``); empty means cgroup v2.
    """
    mount, relative = (root / controller if controller else root), "/"
    for line in (_read(self_cgroup) or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, names, path = fields
        if (controller in names.split(",")) if controller else (fields[0] == "0" and not names):
            if controller and (root / names).is_dir():  # e.g. mounted as cpu,cpuacct
                mount = root / names
            relative = path
            break
    here = mount / relative.lstrip("/")
    if not here.is_dir():  # inside a container's namespace the path may not be mounted
        here = mount
    while True:
        yield here
        if here == mount or here == here.parent:
            return
        here = here.parent


def _ratio(quota: str | None, period: str | None) -> int | None:
    if not quota or not period or quota == "max" or int(quota) <= 0:
        return None
    return math.ceil(int(quota) / int(period))


def _cpu_quota(root: Path, self_cgroup: Path) -> int | None:
    """The cgroup CPU quota rounded up to whole CPUs, or None when unlimited."""
    quotas = []
    for folder in _cgroup_dirs(root, self_cgroup):
        quota, _, period = (_read(folder / "cpu.max") or "max").partition(" ")
        quotas.append(_ratio(quota, period))
    for folder in _cgroup_dirs(root, self_cgroup, "cpu"):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        quotas.append(_ratio(quota, period))
    known = [q for q in quotas if q is not None]
    return max(1, min(known)) if known else None


def _memory_headroom(root: Path, self_cgroup: Path) -> int | None:
    """The smallest ``limit - usage`` over the cgroup and its ancestors, or None when unlimited.

    Usage leaves out inactive page cache, which the kernel reclaims before it kills anything
    (as ``docker stats`` does): a job that has read many files is not full.
    """
    headroom = []
    for folder in _cgroup_dirs(root, self_cgroup):
        limit = _read(folder / "memory.max")
        if limit and limit != "max":
            usage = _read(folder / "memory.current")
            headroom.append(int(limit) - _usage(usage, folder, "inactive_file"))
    for folder in _cgroup_dirs(root, self_cgroup, "memory"):
        limit = _read(folder / "memory.limit_in_bytes")
        if limit and int(limit) < _UNLIMITED_V1:
            usage = _read(folder / "memory.usage_in_bytes")
            headroom.append(int(limit) - _usage(usage, folder, "total_inactive_file"))
    return min(headroom) if headroom else None


def _usage(usage: str | None, folder: Path, cache_key: str) -> int:
    for line in (_read(folder / "memory.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == cache_key:
            return max(0, int(usage or 0) - int(value))
    return int(usage or 0)


def _mem_available(meminfo: Path) -> int | None:
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None
