import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner import runner as mm_runner

import mmfastervit  # noqa: F401
from mmfastervit.checkpoint.atomic_save import atomic_save_checkpoint


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


WRITER = '''
import sys, torch
from mmfastervit.checkpoint.atomic_save import atomic_save_checkpoint
atomic_save_checkpoint({"state_dict": {"w": torch.zeros(128 * 2**20)}}, sys.argv[1])
'''


def test_sigkill_while_writing_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / 'iter_4.pth'
    atomic_save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(path))
    good = path.read_bytes()

    writer = subprocess.Popen([sys.executable, '-c', WRITER, str(path)])
    deadline = time.monotonic() + 120
    while not any(name.endswith('.tmp') for name in os.listdir(tmp_path)):
        assert writer.poll() is None, 'the 512 MB checkpoint was written before it could be killed'
        assert time.monotonic() < deadline
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL
    assert path.read_bytes() == good
