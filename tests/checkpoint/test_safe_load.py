import argparse
import collections
import fractions
import hashlib
import os
import pickle
import shlex
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint
from torch.utils.data import Dataset

from mmfastervit import compat
from mmfastervit.checkpoint import (TRUST_ENV_VAR, InvalidCheckpointError, UnsafeCheckpointError,
                                    safe_load, safe_torch_load, trust_checkpoint)

CHECKPOINT_URL = 'https://checkpoints.example.com/models/toy_checkpoint.pth'


class ToyModel(BaseModel):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, inputs, targets=None, mode='tensor'):
        outputs = self.layers(inputs)
        if mode == 'loss':
            return {'loss': F.mse_loss(outputs, targets)}
        return outputs


class RandomPairs(Dataset):

    def __init__(self, size=8):
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(size, 4, generator=generator)
        self.targets = torch.randn(size, 1, generator=generator)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


class RecordStateBeforeTrain(Hook):
    """Records the iteration and weights a runner starts training from (after any resume)."""

    def before_train(self, runner):
        self.iter = runner.iter
        self.state_dict = clone_state(runner.model)


class CreatesFileWhenUnpickled:
    """Pickles as a call that creates ``marker``: unpickling it unrestricted would run it."""

    def __init__(self, marker, via_shell):
        self.marker = str(marker)
        self.via_shell = via_shell

    def __reduce__(self):
        if self.via_shell:
            return os.system, (f'touch {shlex.quote(self.marker)}', )
        return open, (self.marker, 'w')


def clone_state(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_state(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)


def build_runner(work_dir, max_iters, model=None, **kwargs):
    return Runner(
        model=model or ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'safe_load_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=RandomPairs(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0,
            persistent_workers=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0),
        log_level='WARNING',
        **kwargs)


def timm_checkpoint(state_dict):
    optimizer = torch.optim.SGD(ToyModel().parameters(), lr=0.1, momentum=0.9)
    return {
        'epoch': 309,
        'arch': 'faster_vit_0_224',
        'state_dict': state_dict,
        'optimizer': optimizer.state_dict(),
        'version': 2,
        'args': argparse.Namespace(
            model='faster_vit_0_224', lr=0.005, drop_path=0.2, input_size=[3, 224, 224],
            amp=True, resume=None),
        'metric': 81.2,
    }


@pytest.fixture
def hub_dir(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub'
    torch.hub.set_dir(previous)


@pytest.fixture
def fake_download(monkeypatch):
    """Serves URLs from a dict of local files instead of the network; records each download."""
    served, downloads = {}, []

    def download_url_to_file(url, dst, *args, **kwargs):
        downloads.append((url, dst))
        shutil.copyfile(served[url], dst)

    monkeypatch.setattr(safe_load, 'download_url_to_file', download_url_to_file)
    return served, downloads


@pytest.fixture
def malicious_checkpoint(tmp_path, request):
    marker = tmp_path / 'marker'
    path = tmp_path / 'malicious.pth'
    torch.save({
        'state_dict': ToyModel().state_dict(),
        'meta': {'note': CreatesFileWhenUnpickled(marker, via_shell=request.param)},
    }, path)
    assert not marker.exists()
    return path, marker, 'posix.system' if request.param else 'io.open'


@pytest.mark.parametrize('filename', [
    'work_dirs/iter_2.pth', 'http://example.com/a.pth', 'https://example.com/a.pth',
    'torchvision://resnet50', 'modelzoo://resnet50', 'open-mmlab://resnet50_v1c',
    'openmmlab://resnet50_v1c', 'mmcls://resnet50', 'pavi://model', 's3://bucket/a.pth',
    'petrel://bucket/a.pth', 'open-mmlab:s3://bucket/a.pth'
])
def test_every_mmengine_scheme_loads_safely(filename):
    safe_load.install()  # a second install changes nothing
    loader = CheckpointLoader._get_checkpoint_loader(filename)
    assert loader.__module__ == safe_load.__name__


@pytest.mark.parametrize('malicious_checkpoint', [False, True], indirect=True,
                         ids=['open', 'os.system'])
def test_payload_runs_when_unpickled_without_restrictions(malicious_checkpoint):
    path, marker, _ = malicious_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_runner_resumes_from_its_own_checkpoint(tmp_path):
    first = build_runner(tmp_path, max_iters=2)
    first.train()
    saved_state = clone_state(first.model)
    checkpoint = tmp_path / 'iter_2.pth'
    # What a plain torch.load(weights_only=True) refuses in an MMEngine checkpoint.
    with open(checkpoint, 'rb') as stream:
        needed = safe_load._globals_in_pickles(stream) - compat.torch_safe_globals().keys()
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr',
            'numpy.dtype'} <= needed
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint, weights_only=True)

    recorder = RecordStateBeforeTrain()
    resumed = build_runner(tmp_path, max_iters=3, resume=True, custom_hooks=[recorder])
    resumed.train()

    assert recorder.iter == 2
    assert_same_state(recorder.state_dict, saved_state)
    assert resumed.iter == 3
    final_state = clone_state(resumed.model)
    assert any(not torch.equal(final_state[name], saved_state[name]) for name in saved_state)
    loss_history = resumed.message_hub.get_scalar('train/loss')
    assert len(loss_history.data[0]) == 3  # two logged before the checkpoint, one after resuming


def test_timm_checkpoint_loads_through_every_mmengine_entry_point(tmp_path):
    state_dict = clone_state(ToyModel())
    path = tmp_path / 'fastervit_toy_224_1k.pth.tar'
    torch.save(timm_checkpoint(state_dict), path)

    checkpoint = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert checkpoint['args'] == argparse.Namespace(
        model='faster_vit_0_224', lr=0.005, drop_path=0.2, input_size=[3, 224, 224], amp=True,
        resume=None)
    assert checkpoint['metric'] == 81.2
    assert_same_state(checkpoint['state_dict'], state_dict)

    model = ToyModel()
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    assert_same_state(clone_state(model), state_dict)

    model = ToyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_same_state(clone_state(model), state_dict)


def test_url_is_downloaded_once_into_the_hub_cache(tmp_path, hub_dir, fake_download):
    served, downloads = fake_download
    state_dict = clone_state(ToyModel())
    served[CHECKPOINT_URL] = tmp_path / 'served.pth'
    torch.save(timm_checkpoint(state_dict), served[CHECKPOINT_URL])

    for _ in range(2):
        checkpoint = CheckpointLoader.load_checkpoint(CHECKPOINT_URL)
        assert_same_state(checkpoint['state_dict'], state_dict)
    assert downloads == [(CHECKPOINT_URL, str(hub_dir / 'checkpoints' / 'toy_checkpoint.pth'))]


@pytest.mark.parametrize('malicious_checkpoint', [False, True], indirect=True,
                         ids=['open', 'os.system'])
@pytest.mark.parametrize('entry_point', [
    'local', 'load_checkpoint', 'init_cfg', 'runner_load_from', 'runner_resume', 'https'])
def test_code_in_checkpoint_never_runs(entry_point, malicious_checkpoint, tmp_path, hub_dir,
                                       fake_download):
    path, marker, refused_global = malicious_checkpoint
    served, _ = fake_download
    served[CHECKPOINT_URL] = path

    with pytest.raises(UnsafeCheckpointError) as error:
        if entry_point == 'local':
            CheckpointLoader.load_checkpoint(str(path))
        elif entry_point == 'load_checkpoint':
            load_checkpoint(ToyModel(), str(path))
        elif entry_point == 'init_cfg':
            ToyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
        elif entry_point == 'runner_load_from':
            build_runner(tmp_path / 'work', max_iters=1, load_from=str(path)).load_or_resume()
        elif entry_point == 'runner_resume':
            build_runner(tmp_path / 'work', max_iters=1, load_from=str(path),
                         resume=True).load_or_resume()
        else:
            CheckpointLoader.load_checkpoint(CHECKPOINT_URL)

    message = str(error.value)
    assert refused_global in message
    assert TRUST_ENV_VAR in message
    cached_file = hub_dir / 'checkpoints' / 'toy_checkpoint.pth'
    assert str(cached_file if entry_point == 'https' else path) in message
    assert not marker.exists()


def test_getattr_only_serves_history_buffer_statistics(tmp_path):

    class LooksUpInit:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    path = tmp_path / 'getattr.pth'
    torch.save({'statistics': {'mean': HistoryBuffer.mean}, 'other': LooksUpInit()}, path)
    with pytest.raises(UnsafeCheckpointError,
                       match=r'mmengine\.logging\.history_buffer\.HistoryBuffer\.__init__'):
        safe_torch_load(path)


def test_numpy_values_load_under_both_numpy_module_paths(tmp_path):
    values = {
        'scalar': np.float64(1.5),
        'integer': np.int8(-3),
        'array': np.arange(6, dtype=np.float32).reshape(2, 3),
        'strings': np.array(['ab', 'c']),
        'dtype': np.dtype('int64'),
        'dtype_class': type(np.dtype('float64')),
    }
    legacy = tmp_path / 'legacy.pth'  # the legacy format keeps the pickle's text uncompressed
    torch.save(values, legacy, _use_new_zipfile_serialization=False)
    content = legacy.read_bytes()
    numpy1, numpy2 = b'cnumpy.core.multiarray\n', b'cnumpy._core.multiarray\n'
    assert (numpy1 in content) != (numpy2 in content)
    for old, new in ((numpy1, numpy2), (numpy2, numpy1)):
        path = tmp_path / f'{new.decode().strip()}.pth'
        path.write_bytes(content.replace(old, new))

        loaded = safe_torch_load(path)

        assert loaded.keys() == values.keys()
        for name, value in values.items():
            assert type(loaded[name]) is type(value), name
            if isinstance(value, np.ndarray):
                assert loaded[name].dtype == value.dtype
                np.testing.assert_array_equal(loaded[name], value)
            else:
                assert loaded[name] == value, name


@pytest.fixture
def harmless_untrusted_checkpoint(tmp_path):
    path = tmp_path / 'with_fraction.pth'
    torch.save({'ratio': fractions.Fraction(1, 3)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'fractions\.Fraction'):
        safe_torch_load(path)
    return path


def test_trust_checkpoint_as_context_manager(harmless_untrusted_checkpoint):
    with trust_checkpoint(harmless_untrusted_checkpoint):
        checkpoint = CheckpointLoader.load_checkpoint(str(harmless_untrusted_checkpoint))
    assert checkpoint['ratio'] * 3 == 1
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(harmless_untrusted_checkpoint)


def test_trust_checkpoint_by_call_lasts_until_withdrawn(harmless_untrusted_checkpoint):
    trust = trust_checkpoint(str(harmless_untrusted_checkpoint))
    try:
        assert safe_torch_load(harmless_untrusted_checkpoint)['ratio'] * 3 == 1
        assert safe_torch_load(harmless_untrusted_checkpoint)['ratio'] * 3 == 1
    finally:
        trust.close()
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(harmless_untrusted_checkpoint)


def test_trust_by_environment_variable(harmless_untrusted_checkpoint, tmp_path, monkeypatch):
    copy = tmp_path / 'copy.pth'
    shutil.copyfile(harmless_untrusted_checkpoint, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()

    monkeypatch.setenv(TRUST_ENV_VAR, os.pathsep.join([str(tmp_path / 'other.pth'), digest]))
    assert safe_torch_load(copy)['ratio'] * 3 == 1  # trusted by content

    monkeypatch.setenv(TRUST_ENV_VAR, str(harmless_untrusted_checkpoint))
    assert safe_torch_load(harmless_untrusted_checkpoint)['ratio'] * 3 == 1
    with pytest.raises(UnsafeCheckpointError):  # a path only trusts that file
        safe_torch_load(copy)


def test_refusal_message_gives_the_digest_to_trust(harmless_untrusted_checkpoint):
    digest = hashlib.sha256(Path(harmless_untrusted_checkpoint).read_bytes()).hexdigest()
    with pytest.raises(UnsafeCheckpointError, match=digest):
        safe_torch_load(harmless_untrusted_checkpoint)


@pytest.mark.parametrize('content', [b'hello\n', b'', b'\x80\x02xjunk', b'\x00' * 100, 'truncated'])
def test_unreadable_files_name_the_file_and_the_problem(tmp_path, content):
    path = tmp_path / 'weights.pth'
    if content == 'truncated':
        torch.save({'w': torch.zeros(1000)}, path)
        content = path.read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(InvalidCheckpointError,
                       match=r'weights.pth is not a readable PyTorch checkpoint \(not written by '
                             r'torch.save, truncated or corrupted\)') as error:
        CheckpointLoader.load_checkpoint(str(path))
    assert 'weights_only' not in str(error.value)


def test_file_swapped_after_hashing_is_not_trusted(harmless_untrusted_checkpoint, tmp_path,
                                                   monkeypatch):
    """Trust by digest covers the bytes that were hashed: replacing the file right after it was
    hashed, before it is loaded, must not get the replacement loaded as trusted."""
    path = Path(harmless_untrusted_checkpoint)
    monkeypatch.setenv(TRUST_ENV_VAR, hashlib.sha256(path.read_bytes()).hexdigest())
    marker = tmp_path / 'marker'
    replacement = tmp_path / 'replacement.pth'
    torch.save({'ratio': CreatesFileWhenUnpickled(marker, via_shell=False)}, replacement)
    sha256 = hashlib.sha256

    class ReplaceFileWhenHashed:

        def __init__(self):
            self.digest = sha256()

        def update(self, data):
            self.digest.update(data)

        def hexdigest(self):
            if replacement.exists():
                os.replace(replacement, path)
            return self.digest.hexdigest()

    monkeypatch.setattr(safe_load.hashlib, 'sha256', ReplaceFileWhenHashed)
    assert safe_torch_load(path)['ratio'] * 3 == 1  # what was hashed and trusted
    assert not replacement.exists()  # the file was replaced
    assert not marker.exists()
    monkeypatch.undo()
    with pytest.raises(UnsafeCheckpointError, match='io.open'):  # the replacement, untrusted
        safe_torch_load(path)


@pytest.mark.parametrize('legacy_format', [False, True], ids=['zip', 'legacy'])
def test_trusted_checkpoint_larger_than_the_in_memory_copy(tmp_path, monkeypatch, legacy_format):
    """A trusted checkpoint is loaded from a private copy, which beyond a size is a temporary
    file rather than memory."""
    monkeypatch.setattr(safe_load, '_COPY_IN_MEMORY_BYTES', 1000)
    path = tmp_path / 'large.pth'
    weights = torch.randn(1000)
    torch.save({'ratio': fractions.Fraction(1, 3), 'weights': weights}, path,
               _use_new_zipfile_serialization=not legacy_format)
    assert path.stat().st_size > 4000
    with trust_checkpoint(path):
        checkpoint = safe_torch_load(path)
    assert checkpoint['ratio'] * 3 == 1
    assert torch.equal(checkpoint['weights'], weights)


# Both ways of restricting the unpickler, each on the torch releases that have it (safe_globals from
# torch 2.6 on); the restricted unpickler also runs on newer ones, to compare the two.
LOADERS = ['restricted_unpickler'] + (['safe_globals'] if compat.HAS_SAFE_GLOBALS else [])


def load_with(loader, monkeypatch, path):
    monkeypatch.setattr(compat, 'HAS_SAFE_GLOBALS', loader == 'safe_globals')
    return safe_torch_load(path)


@pytest.mark.parametrize('loader', LOADERS)
@pytest.mark.parametrize('legacy_format', [False, True], ids=['zip', 'legacy'])
def test_data_loads_the_same_whichever_way_unpickling_is_restricted(tmp_path, monkeypatch, loader,
                                                                      legacy_format):
    history = HistoryBuffer()
    history.update(2.5)
    data = {
        'parameter': nn.Parameter(torch.arange(3.0)),
        'tensors': collections.OrderedDict(half=torch.ones(2, dtype=torch.half),
                                           flags=torch.tensor([True, False])),
        'dtypes': [torch.bfloat16, torch.bool, torch.uint8, torch.float32],
        'device': torch.device('cpu'),
        'plain': {'set': {1, 2}, 'bytes': b'ab', 'bytearray': bytearray(b'c'), 'complex': 1 + 2j,
                  'counter': collections.Counter('aab'), 'tuple': (1, 'x', None, 2.5)},
        'numpy': {'array': np.arange(4, dtype=np.int16), 'scalar': np.float32(1.5)},
        'args': argparse.Namespace(lr=0.1, size=[3, 224, 224]),
        'history': history,
    }
    path = tmp_path / 'data.pth'
    torch.save(data, path, _use_new_zipfile_serialization=not legacy_format)

    loaded = load_with(loader, monkeypatch, path)

    assert type(loaded['parameter']) is nn.Parameter
    assert torch.equal(loaded['parameter'], data['parameter'])
    assert list(loaded['tensors']) == ['half', 'flags']
    for name, tensor in data['tensors'].items():
        assert loaded['tensors'][name].dtype == tensor.dtype
        assert torch.equal(loaded['tensors'][name], tensor)
    assert loaded['dtypes'] == data['dtypes'] and loaded['device'] == data['device']
    assert loaded['plain'] == data['plain']
    assert type(loaded['plain']['counter']) is collections.Counter
    np.testing.assert_array_equal(loaded['numpy']['array'], data['numpy']['array'])
    assert loaded['numpy']['scalar'] == np.float32(1.5)
    assert loaded['args'] == data['args']
    assert loaded['history'].current() == 2.5


@pytest.mark.parametrize('legacy_format', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('payload', ['os.system', 'fraction', 'getattr_init'])
def test_refusal_is_the_same_whichever_way_unpickling_is_restricted(tmp_path, monkeypatch,
                                                                    legacy_format, payload):
    marker = tmp_path / 'marker'

    class LooksUpInit:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    refused_value, refused_name = {
        'os.system': (CreatesFileWhenUnpickled(marker, via_shell=True), 'posix.system'),
        'fraction': (fractions.Fraction(1, 3), 'fractions.Fraction'),
        'getattr_init': (LooksUpInit(), 'HistoryBuffer.__init__'),
    }[payload]
    path = tmp_path / 'refused.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': [refused_value]}, path,
               _use_new_zipfile_serialization=not legacy_format)

    messages = set()
    for loader in LOADERS:
        with pytest.raises(UnsafeCheckpointError) as error:
            load_with(loader, monkeypatch, path)
        messages.add(str(error.value))
    assert len(messages) == 1
    assert refused_name in messages.pop()
    assert not marker.exists()


def legacy_checkpoint(main_pickle: bytes) -> bytes:
    """A checkpoint in torch's legacy format (a sequence of pickles) whose object is unpickled
    from ``main_pickle``, with no tensor data."""
    header = [0x1950a86a20f9469cfc6c, 1001,
              dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4,
                                                                               long=4))]
    return b''.join([*(pickle.dumps(value, protocol=2) for value in header), main_pickle,
                     pickle.dumps([], protocol=2)])


@pytest.mark.parametrize('loader', LOADERS)
def test_no_class_can_be_altered_by_setting_its_state(tmp_path, monkeypatch, loader):
    # GLOBAL argparse.Namespace, then BUILD with (None, {'altered': True}): setattr on the class.
    alters_class = (b'\x80\x02cargparse\nNamespace\nN}X\x07\x00\x00\x00altered\x88s\x86b.')
    assert pickle.loads(alters_class) is argparse.Namespace  # unrestricted, it alters the class
    assert argparse.Namespace.altered is True
    del argparse.Namespace.altered
    path = tmp_path / 'alters_class.pth'
    path.write_bytes(legacy_checkpoint(alters_class))

    with pytest.raises(InvalidCheckpointError):
        load_with(loader, monkeypatch, path)
    assert not hasattr(argparse.Namespace, 'altered')


@pytest.mark.parametrize('loader', LOADERS)
def test_opcodes_torch_save_never_writes_are_refused(tmp_path, monkeypatch, loader):
    path = tmp_path / 'protocol4.pth'
    torch.save({'w': torch.ones(2)}, path, pickle_protocol=4)
    with pytest.raises(InvalidCheckpointError, match='protocol4.pth is not a readable'):
        load_with(loader, monkeypatch, path)
