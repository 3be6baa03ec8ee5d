"""Command line checks of tools/train.py and tools/test.py that fail before any model is built."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error shown without CUDA')
def test_train_amp_without_gpu_is_an_error():
    result = run_tool('tools/train.py', 'any_config.py', '--amp')
    assert result.returncode == 2
    assert '--amp needs a CUDA GPU' in result.stderr


def test_test_out_must_be_a_pickle():
    result = run_tool('tools/test.py', 'any_config.py', 'any.pth', '--out', 'results.json')
    assert result.returncode == 2
    assert '.pkl' in result.stderr
