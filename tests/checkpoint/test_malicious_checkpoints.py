"""No load path of the plugin can be made to run code pickled into a checkpoint.

The in-process loader is fuzzed over payload functions, where the payload hides in the checkpoint
and the checkpoint's layout; every command-line entry point that reads a checkpoint is then tried
once with a malicious file, in a fresh process.
"""
import argparse
import builtins
import os
import shlex
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmfastervit.checkpoint import UnsafeCheckpointError, safe_torch_load
from mmfastervit.datasets import generate_ade, generate_coco


def _payloads(marker: str):
    """(callable, arguments) pairs that create ``marker`` when called."""
    quoted = shlex.quote(marker)
    return {
        'os.system': (os.system, (f'touch {quoted}', )),
        'subprocess.call': (subprocess.call, (['touch', marker], )),
        'builtins.exec': (builtins.exec, (f'open({marker!r}, "w").close()', )),
        'builtins.eval': (builtins.eval, (f'open({marker!r}, "w").close()', )),
        'builtins.open': (builtins.open, (marker, 'w')),
        'os.mkdir': (os.mkdir, (marker, )),
    }


PAYLOAD_NAMES = sorted(_payloads('x'))


class Payload:
    """Pickles as a call of one of :func:`_payloads`."""

    def __init__(self, name: str, marker: str):
        self.name, self.marker = name, marker

    def __reduce__(self):
        return _payloads(self.marker)[self.name]


def _weights():
    return {'patch_embed.conv_down.0.weight': torch.randn(3, 3, 3, 3)}


def _layout(kind: str, payload: Payload) -> dict:
    """A checkpoint of the given layout with the payload hidden somewhere in it."""
    if kind == 'official_args':  # the official training dict keeps its argparse namespace
        return {'state_dict': _weights(), 'args': argparse.Namespace(model=payload), 'epoch': 1}
    if kind == 'official_model_key':
        return {'model': {**_weights(), 'extra': payload}}
    if kind == 'mmengine_meta':
        return {'state_dict': _weights(), 'meta': {'hook_msgs': [{'note': payload}]}}
    if kind == 'optimizer_state':
        return {'state_dict': _weights(), 'optimizer': {'state': {0: payload}, 'param_groups': []}}
    if kind == 'bare_state_dict':
        return {**_weights(), 'nested': ((payload, ), )}
    raise ValueError(kind)


LAYOUTS = ['official_args', 'official_model_key', 'mmengine_meta', 'optimizer_state',
           'bare_state_dict']


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(PAYLOAD_NAMES), layout=st.sampled_from(LAYOUTS),
       zipped=st.booleans())
def test_no_payload_runs_wherever_it_hides(tmp_path, name, layout, zipped):
    marker = tmp_path / f'marker-{name}-{layout}-{zipped}'
    path = tmp_path / 'malicious.pth'
    torch.save(_layout(layout, Payload(name, str(marker))), path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match='Refusing to load checkpoint'):
        safe_torch_load(str(path))
    assert not marker.exists()


TOY_DET = 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
TOY_SEG = 'configs/seg/toy/upernet_fastervit-0_toy-ade-224x224.py'


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    generate_coco(root / 'coco', num_train=1, num_val=1, image_size=((64, 64), (64, 64)))
    generate_ade(root / 'ade', num_train=1, num_val=1, image_size=((64, 64), (64, 64)))
    return root


def _entry_points(data, checkpoint, out):
    image = next((data / 'ade' / 'images' / 'validation').iterdir())
    coco = [f'test_dataloader.dataset.data_root={data}/coco/',
            f'test_evaluator.ann_file={data}/coco/annotations/instances_val.json']
    return {
        'convert_official': ['tools/convert_official.py', checkpoint, f'{out}/converted.pth'],
        'classify': ['demo/classify.py', str(image), checkpoint, '--arch', '0'],
        'image_demo_det': ['demo/image_demo.py', str(image), TOY_DET, checkpoint,
                           '--out-dir', out],
        'image_demo_seg': ['demo/image_demo.py', str(image), TOY_SEG, checkpoint,
                           '--out-dir', out],
        'test_tool': ['tools/test.py', TOY_DET, checkpoint, '--work-dir', out,
                      '--cfg-options', *coco],
        'train_resume': ['tools/train.py', TOY_SEG, '--resume', checkpoint, '--work-dir', out,
                         '--cfg-options', f'train_dataloader.dataset.data_root={data}/ade',
                         f'val_dataloader.dataset.data_root={data}/ade'],
    }


@pytest.mark.slow
@pytest.mark.parametrize('entry_point', ['convert_official', 'classify', 'image_demo_det',
                                         'image_demo_seg', 'test_tool', 'train_resume'])
def test_command_line_tools_refuse_malicious_checkpoints(entry_point, toy_data, tmp_path):
    marker = tmp_path / 'marker'
    checkpoint = tmp_path / 'fastervit_0_224_1k.pth.tar'
    torch.save(_layout('official_args', Payload('os.system', str(marker))), checkpoint)
    command = _entry_points(toy_data, str(checkpoint), str(tmp_path / 'out'))[entry_point]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert 'Refusing to load checkpoint' in result.stderr, result.stderr[-3000:]
    assert 'posix.system' in result.stderr
    assert not marker.exists()
