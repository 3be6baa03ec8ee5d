"""Use as many CPU threads as the process may run, not as many as the host has.

A container with a CPU bandwidth limit (``docker run --cpus 2``, a Kubernetes CPU limit) still
sees every CPU of its host, and torch starts one OpenMP thread per visible CPU. The limit then
lets only a few of them run in each scheduling period and the others wait. Too many threads cost
dearly: on a 2-core machine, 32 threads made a training step of the toy Cascade Mask R-CNN 3.6
times slower than 2. The tools therefore read the limit from the process's cgroup (v1 or v2) and
lower torch's thread count to it, unless ``OMP_NUM_THREADS`` chooses the count. (A CPU set, as
``docker run --cpuset-cpus`` or Slurm confine a job to, needs nothing: torch already counts only
the CPUs a process may run on.)
"""
import math
import os
from pathlib import Path
from typing import Iterator, Optional

import torch
from mmengine.logging import print_log

THREAD_ENV_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')


def _cgroup_dirs(mount: Path, path: str) -> Iterator[Path]:
    """The cgroup directory of ``path`` under ``mount`` and its ancestors up to ``mount``: a
    limit set on any of them applies. In a container the path can name the host's hierarchy
    while the container's own cgroup is mounted at ``mount``; directories missing are skipped."""
    parts = [part for part in path.split('/') if part]
    for depth in range(len(parts), -1, -1):
        directory = mount.joinpath(*parts[:depth])
        if directory.is_dir():
            yield directory


def _read_words(path: Path) -> Optional[list]:
    try:
        return path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: Optional[list], period: Optional[list]) -> Optional[float]:
    try:
        quota, period = int(quota[0]), int(period[0])
    except (TypeError, IndexError, ValueError):  # no file, empty, 'max' (v2: no limit)
        return None
    return quota / period if quota > 0 and period > 0 else None  # v1: quota -1 is no limit


def _v2_limit(directory: Path) -> Optional[float]:
    words = _read_words(directory / 'cpu.max')  # "<quota> <period>" or "max <period>"
    return _ratio(words, words[1:] if words else None)


def _v1_limit(directory: Path) -> Optional[float]:
    return _ratio(_read_words(directory / 'cpu.cfs_quota_us'),
                  _read_words(directory / 'cpu.cfs_period_us'))


def cgroup_cpu_limit(proc_cgroup: str = '/proc/self/cgroup',
                     cgroup_root: str = '/sys/fs/cgroup') -> Optional[float]:
    """The number of CPUs (possibly fractional) this process's cgroup lets it use at once, the
    smallest limit along its hierarchy; ``None`` when there is none or it cannot be read."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    root = Path(cgroup_root)
    limits = []
    for line in lines:
        fields = line.split(':', 2)  # hierarchy id, controllers, path
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == '':  # cgroup v2: one unified hierarchy
            limits += [_v2_limit(d) for d in _cgroup_dirs(root, path)]
        elif 'cpu' in controllers.split(','):
            for mount_name in (controllers, 'cpu', 'cpu,cpuacct', 'cpuacct,cpu'):
                mount = root / mount_name
                if mount.is_dir():
                    limits += [_v1_limit(d) for d in _cgroup_dirs(mount, path)]
                    break
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def match_threads_to_cpu_limit(**cgroup_paths) -> Optional[int]:
    """Lower torch's intra-op thread count to the cgroup CPU limit, rounded up (as the JVM rounds
    it), when the limit is below the count and no ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` is
    set. Returns the new count, or ``None`` when nothing changed. ``cgroup_paths`` are passed to
    :func:`cgroup_cpu_limit`."""
    if any(os.environ.get(name) for name in THREAD_ENV_VARS):
        return None
    limit = cgroup_cpu_limit(**cgroup_paths)
    if limit is None:
        return None
    threads = max(1, math.ceil(limit))
    if threads >= torch.get_num_threads():
        return None
    print_log(
        f'the cgroup CPU limit of this process is {limit:g} CPUs but torch would start '
        f'{torch.get_num_threads()} threads; using {threads} (set OMP_NUM_THREADS to choose)',
        logger='current')
    torch.set_num_threads(threads)
    return threads
