"""What several test modules share: small FasterViT architectures, and running this checkout's
tools as a user does. Test modules import these names (``from tests.conftest import ...``)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Small architectures, each named by what it exercises. All keep the defaults they do not set:
# 7x7 windows, carrier tokens (HAT) in stage 2, no drop path.
# Without layer scale or carrier-token propagation.
TINY_ARCH_PLAIN = dict(depths=(1, 1, 2, 1), dim=16, in_dim=8, num_heads=(1, 2, 2, 4),
                       window_size=(7, 7, 7, 7))
# Layer scale and carrier-token propagation on.
TINY_ARCH_LAYER_SCALE_PROPAGATION = dict(depths=(1, 1, 2, 1), dim=16, in_dim=8,
                                         num_heads=(1, 2, 2, 4), layer_scale=0.1,
                                         propagation=True)
# The smallest: one block per stage, 8 channels.
TINY_ARCH_ONE_BLOCK_PER_STAGE = dict(depths=(1, 1, 1, 1), dim=8, in_dim=8, num_heads=(1, 1, 2, 2))
# Several blocks per stage and layer scales (``gamma*`` parameters): every kind of parameter.
TINY_ARCH_EVERY_PARAMETER_KIND = dict(depths=(1, 2, 3, 2), dim=16, in_dim=8,
                                      num_heads=(1, 2, 2, 4), layer_scale=1e-5)


def checkout_environment(env: Optional[dict] = None) -> dict:
    """``env`` (by default this process's environment) with this checkout's package first on
    PYTHONPATH, for the processes a test starts."""
    env = dict(os.environ if env is None else env)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    return env


def run_tool(tool: str, *args, cwd: Path = REPO, env: Optional[dict] = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a script of this checkout (``tools/train.py``, ``demo/classify.py``, or a ``.sh``
    launcher, with bash) in a fresh process, as users do, importing this checkout's package."""
    env = checkout_environment(env)
    env['PYTHON'] = sys.executable  # the interpreter the launchers run
    script = REPO / tool
    command = ['bash' if script.suffix == '.sh' else sys.executable, script, *args]
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def output_of(result: subprocess.CompletedProcess) -> str:
    """The output (stdout, then stderr) of a command that must have succeeded; a failed one fails
    the test, showing the end of its output."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def last_test_metrics(work_dir: Path) -> dict:
    """Metrics of the last test run (MMEngine writes <work_dir>/<timestamp>/<timestamp>.json)."""
    runs = sorted(path for path in work_dir.iterdir() if (path / f'{path.name}.json').is_file())
    assert runs, f'no test run recorded under {work_dir}'
    return json.loads((runs[-1] / f'{runs[-1].name}.json').read_text())


def free_port() -> int:
    """A TCP port nothing listens on now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# timm's IMAGENET_DEFAULT_MEAN and IMAGENET_DEFAULT_STD, for pixels in 0-255.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]) * 255


def imagenet_eval_input(path: Path, resize: int, crop: int) -> torch.Tensor:
    """The official evaluation preprocessing of an image (timm's: bicubic resize of the short side
    to ``resize``, the long side truncated, a centre crop of ``crop``, ImageNet mean and std),
    written with PIL alone: a 1x3xcropxcrop RGB tensor."""
    image = Image.open(path).convert('RGB')
    width, height = image.size
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    image = image.resize(size, Image.BICUBIC)
    left, top = (int(round((side - crop) / 2)) for side in size)
    image = image.crop((left, top, left + crop, top + crop))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
    return ((pixels - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None])[None]


def compile_keeping_graphs(fn) -> tuple:
    """``torch.compile(fn)`` with a backend that keeps every graph dynamo traces and runs it as
    traced (no inductor), and that list of graphs; dynamo's caches are reset first."""
    import torch._dynamo
    graphs = []

    def keeping_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    return torch.compile(fn, backend=keeping_backend), graphs

