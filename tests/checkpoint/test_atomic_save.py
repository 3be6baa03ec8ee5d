import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner import runner as mm_runner

import mmfastervit  # noqa: F401
from mmfastervit.checkpoint import atomic_save
from mmfastervit.checkpoint.atomic_save import (STALE_AFTER_SECONDS, atomic_save_checkpoint,
                                                remove_stale_temporaries)
from tests.conftest import checkout_environment


def test_runner_saves_through_the_atomic_writer():
    assert mm_runner.save_checkpoint is atomic_save_checkpoint


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_4.pth')
    atomic_save_checkpoint({'state_dict': {'w': torch.ones(3)}}, path)
    good = open(path, 'rb').read()

    def dying_write(fd, *args, **kwargs):
        raise KeyboardInterrupt('killed while writing')

    monkeypatch.setattr(os, 'fsync', dying_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_save_checkpoint({'state_dict': {'w': torch.zeros(1000)}}, path)
    assert open(path, 'rb').read() == good
    assert os.listdir(tmp_path) == ['iter_4.pth']  # no temporary file left behind
    assert torch.equal(torch.load(path, weights_only=True)['state_dict']['w'], torch.ones(3))


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_permissions_follow_the_umask_as_with_torch_save(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_save_checkpoint({'w': torch.ones(1)}, str(tmp_path / 'atomic.pth'))
        torch.save({'w': torch.ones(1)}, tmp_path / 'plain.pth')
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / 'atomic.pth').stat().st_mode)
    assert mode == 0o666 & ~umask
    assert mode == stat.S_IMODE((tmp_path / 'plain.pth').stat().st_mode)


def test_the_directory_is_synced_after_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(('fsync', os.path.realpath(f'/proc/self/fd/{fd}')))
        fsync(fd)

    def recording_replace(source, target):
        events.append(('replace', str(target)))
        replace(source, target)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    monkeypatch.setattr(os, 'replace', recording_replace)
    path = tmp_path / 'iter_2.pth'
    atomic_save_checkpoint({'w': torch.ones(1)}, str(path))
    assert events[1:] == [('replace', str(path)), ('fsync', str(tmp_path))]
    assert events[0][0] == 'fsync' and events[0][1].endswith(atomic_save.TEMPORARY_SUFFIX)


# Saves a checkpoint that stalls while being written (pickling Stall), once the temporary file is
# created and locked, and says so: the test kills it exactly there.
STALLED_WRITER = '''
import sys, time, torch
from mmfastervit.checkpoint.atomic_save import atomic_save_checkpoint

class Stall:
    def __reduce__(self):
        print('writing', flush=True)
        time.sleep(120)

atomic_save_checkpoint({'state_dict': {'w': torch.zeros(4)}, 'stall': Stall()}, sys.argv[1])
'''


def age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_killed_save_keeps_the_checkpoint_and_its_temporary_is_removed_later(tmp_path):
    path = tmp_path / 'iter_4.pth'
    atomic_save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(path))
    good = path.read_bytes()
    others = ['.iter_2.pth.1234abcd.tmp', 'notes.mmfastervit-tmp', '.iter_6.pth.tmp']
    for name in others:  # other programs' temporaries, however old, are not ours to remove
        (tmp_path / name).write_bytes(b'x')
        age(tmp_path / name, 10 * STALE_AFTER_SECONDS)

    existing = set(tmp_path.iterdir())
    writer = subprocess.Popen([sys.executable, '-c', STALLED_WRITER, str(path)],
                              env=checkout_environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == 'writing\n', 'the writer ended without writing'
        (temporary, ) = set(tmp_path.iterdir()) - existing
        assert atomic_save.is_temporary(temporary.name)
        assert temporary.name.startswith('.iter_4.pth.')

        # The writer is alive and holds its lock: even an old temporary stays.
        age(temporary, 2 * STALE_AFTER_SECONDS)
        assert remove_stale_temporaries(str(tmp_path)) == []
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert path.read_bytes() == good
    assert torch.equal(torch.load(path, weights_only=True)['state_dict']['w'], torch.ones(3))

    # Killed a moment ago: a writer could still be about to lock it, it stays a while.
    os.utime(temporary)
    assert remove_stale_temporaries(str(tmp_path)) == []
    age(temporary, STALE_AFTER_SECONDS + 1)
    atomic_save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(tmp_path / 'iter_6.pth'))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + ['iter_4.pth',
                                                                         'iter_6.pth'])
