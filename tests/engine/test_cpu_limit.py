"""The cgroup CPU limit read from fake cgroup trees, and torch's thread count lowered to it."""
import pytest
import torch

from mmfastervit.engine.cpu_limit import (THREAD_ENV_VARS, cgroup_cpu_limit,
                                          match_threads_to_cpu_limit)


def fake_cgroups(tmp_path, membership, files):
    """A /proc/self/cgroup with ``membership`` lines and a cgroup tree with ``files``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / 'proc_self_cgroup'
    proc.write_text(''.join(f'{line}\n' for line in membership))
    root = tmp_path / 'cgroup'
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    return dict(proc_cgroup=str(proc), cgroup_root=str(root))


def test_v2_limit_is_the_smallest_along_the_hierarchy(tmp_path):
    paths = fake_cgroups(tmp_path, ['0::/jobs/job7/step'], {
        'jobs/cpu.max': '400000 100000\n',
        'jobs/job7/cpu.max': '150000 100000\n',
        'jobs/job7/step/cpu.max': 'max 100000\n',
    })
    assert cgroup_cpu_limit(**paths) == 1.5


def test_v2_without_a_limit(tmp_path):
    paths = fake_cgroups(tmp_path, ['0::/'], {'cpu.max': 'max 100000\n'})
    assert cgroup_cpu_limit(**paths) is None


def test_v1_limit_of_a_container_whose_path_names_the_host_hierarchy(tmp_path):
    # Docker without a cgroup namespace: the path is the host's, the container's cgroup is the
    # mount's root.
    paths = fake_cgroups(tmp_path, ['5:memory:/docker/abc', '4:cpu,cpuacct:/docker/abc', '0::/'], {
        'cpu,cpuacct/cpu.cfs_quota_us': '200000\n',
        'cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    })
    assert cgroup_cpu_limit(**paths) == 2.0


def test_v1_quota_minus_one_is_no_limit(tmp_path):
    paths = fake_cgroups(tmp_path, ['1:cpu:/'], {
        'cpu/cpu.cfs_quota_us': '-1\n',
        'cpu/cpu.cfs_period_us': '100000\n',
    })
    assert cgroup_cpu_limit(**paths) is None


def test_unreadable_or_malformed_cgroups_mean_no_limit(tmp_path):
    assert cgroup_cpu_limit(str(tmp_path / 'missing'), str(tmp_path)) is None
    paths = fake_cgroups(tmp_path, ['garbage', '0::/a'], {'a/cpu.max': 'lots\n'})
    assert cgroup_cpu_limit(**paths) is None


@pytest.fixture
def four_threads(monkeypatch):
    for name in THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_threads_lowered_to_the_limit_rounded_up(tmp_path, four_threads):
    paths = fake_cgroups(tmp_path, ['0::/'], {'cpu.max': '150000 100000\n'})
    assert match_threads_to_cpu_limit(**paths) == 2
    assert torch.get_num_threads() == 2


def test_threads_kept_when_chosen_or_within_the_limit(tmp_path, four_threads, monkeypatch):
    paths = fake_cgroups(tmp_path, ['0::/'], {'cpu.max': '100000 100000\n'})
    monkeypatch.setenv('OMP_NUM_THREADS', '4')
    assert match_threads_to_cpu_limit(**paths) is None
    assert torch.get_num_threads() == 4
    monkeypatch.delenv('OMP_NUM_THREADS')
    generous = fake_cgroups(tmp_path / 'b', ['0::/'], {'cpu.max': '800000 100000\n'})
    assert match_threads_to_cpu_limit(**generous) is None
    assert torch.get_num_threads() == 4
