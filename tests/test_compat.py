"""The torch compatibility layer (``mmfastervit/compat.py``), and the rule that keeps it the only
place that touches torch APIs the oldest supported torch (2.1) lacks."""
import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

from mmfastervit import compat
from tests.conftest import REPO

COMPAT_MODULE = REPO / 'mmfastervit' / 'compat.py'
SOURCE_FOLDERS = ('mmfastervit', 'tools', 'demo')

# torch APIs that torch 2.1 does not have, with the release that brought them (for the message;
# what the tests check is that torch 2.1 lacks each and torch 2.13 has it). Code outside compat.py
# must not use them, nor anything under them.
NEWER_TORCH_APIS = {
    'torch.accelerator': '2.6',
    'torch.amp.GradScaler': '2.3',
    'torch.amp.custom_bwd': '2.4',
    'torch.amp.custom_fwd': '2.4',
    'torch.compiler.is_compiling': '2.3',
    'torch.compiler.is_dynamo_compiling': '2.3',
    'torch.compiler.is_exporting': '2.6',
    'torch.compiler.set_stance': '2.6',
    'torch.export.Dim': '2.2',
    'torch.get_autocast_dtype': '2.4',
    'torch.get_default_device': '2.3',
    'torch.library.custom_op': '2.4',
    'torch.library.register_fake': '2.4',
    'torch.nn.RMSNorm': '2.4',
    'torch.nn.attention': '2.3',
    'torch.nn.functional.rms_norm': '2.4',
    'torch.serialization.add_safe_globals': '2.4',
    'torch.serialization.clear_safe_globals': '2.4',
    'torch.serialization.get_safe_globals': '2.4',
    'torch.serialization.get_unsafe_globals_in_checkpoint': '2.5',
    'torch.serialization.safe_globals': '2.5',
    'torch.serialization.skip_data': '2.6',
    'torch.set_autocast_dtype': '2.4',
}

# Methods of nn.Module and Tensor that torch 2.1 lacks (torch 2.13 has them all). Any attribute of
# that name outside compat.py counts, whatever it is called on.
NEWER_TORCH_METHODS = {
    torch.nn.Module: ('register_load_state_dict_pre_hook', 'register_state_dict_post_hook',
                      'set_submodule'),
    torch.Tensor: ('const_data_ptr', 'module_load', 'hash_tensor', 'slice_inverse'),
}


def _sdpa_with_gqa_flag():
    query = torch.zeros(1, 1, 1, 2)
    return F.scaled_dot_product_attention(query, query, query, enable_gqa=False)


# Arguments that older torch functions gained after torch 2.1: (function, keyword, the position
# it can also be given at, or None) -> (release, a probe that raises TypeError on a torch without
# the argument).
NEWER_TORCH_ARGUMENTS = {
    ('torch.is_autocast_enabled', 'device_type', 0):
        ('2.4', lambda: torch.is_autocast_enabled('cpu')),
    ('torch.onnx.export', 'dynamo', None):
        ('2.5', lambda: inspect.signature(torch.onnx.export).bind_partial(dynamo=True)),
    ('torch.onnx.export', 'dynamic_shapes', None):
        ('2.5', lambda: inspect.signature(torch.onnx.export).bind_partial(dynamic_shapes={})),
    ('torch.nn.functional.scaled_dot_product_attention', 'enable_gqa', None):
        ('2.5', _sdpa_with_gqa_flag),
}


def source_files() -> List[Path]:
    files = [path for folder in SOURCE_FOLDERS for path in sorted((REPO / folder).rglob('*.py'))]
    return [path for path in files if path != COMPAT_MODULE]


def torch_imports(tree: ast.AST) -> Iterator[Tuple[ast.stmt, str, str, str]]:
    """(import statement, local name it binds, what that name stands for, what it imports) for
    every import of torch or anything in it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'torch':
                    local = alias.asname or alias.name.split('.')[0]
                    yield node, local, alias.name if alias.asname else local, alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == 'torch':
            for alias in node.names:
                imported = f'{node.module}.{alias.name}'
                yield node, alias.asname or alias.name, imported, imported


def imported_names(tree: ast.AST) -> Dict[str, str]:
    """Local name -> the dotted path it stands for, from the module's imports of torch."""
    return {local: meaning for _, local, meaning, _ in torch_imports(tree)}


def dotted_path(node: ast.AST, names: Dict[str, str]) -> str:
    """``torch.a.b`` for an expression ``torch.a.b`` (or ``F.b`` with ``F`` imported from torch),
    else ''."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return ''
    return '.'.join([names[node.id], *reversed(attributes)])


Use = Tuple[str, int, str]  # (file relative to the checkout, line, dotted path)


def torch_uses(path: Path, root: Path = REPO) -> Iterator[Use]:
    """Every torch API the file names (longest dotted paths, imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    names = imported_names(tree)
    where = str(path.relative_to(root))
    for node, _, _, imported in torch_imports(tree):
        yield where, node.lineno, imported
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)) and id(node) not in inner:
            dotted = dotted_path(node, names)
            if '.' in dotted:
                yield where, node.lineno, dotted


def all_torch_uses() -> List[Use]:
    return [use for path in source_files() for use in torch_uses(path)]


def newer_api(dotted: str) -> str:
    for api in NEWER_TORCH_APIS:
        if dotted == api or dotted.startswith(api + '.'):
            return api
    return ''


def calls_with_newer_arguments(path: Path, root: Path = REPO) -> Iterator[Tuple[Use, str]]:
    tree = ast.parse(path.read_text(), str(path))
    names = imported_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = dotted_path(node.func, names)
        keywords = {keyword.arg for keyword in node.keywords}
        for (api, keyword, position), (release, _) in NEWER_TORCH_ARGUMENTS.items():
            if function == api and (keyword in keywords or
                                    (position is not None and len(node.args) > position)):
                use = (str(path.relative_to(root)), node.lineno, f'{api}({keyword}=...)')
                yield use, release


def newer_method_uses(path: Path, root: Path = REPO) -> Iterator[Use]:
    names = {name for methods in NEWER_TORCH_METHODS.values() for name in methods}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in names:
            yield str(path.relative_to(root)), node.lineno, f'.{node.attr}'


def resolves(dotted: str) -> bool:
    """Whether the installed torch has ``dotted`` (an attribute or a submodule)."""
    parts = dotted.split('.')
    target = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            target = getattr(target, part)
        except AttributeError:
            try:
                target = importlib.import_module('.'.join(parts[:i]))
            except ImportError:
                return False
    return True


def test_the_walk_finds_torch_apis_however_they_are_imported(tmp_path):
    module = tmp_path / 'example.py'
    module.write_text('import torch\n'
                      'import torch.nn.functional as F\n'
                      'from torch import compiler\n'
                      'from torch.serialization import safe_globals as allow\n'
                      'def f(x):\n'
                      '    if torch.compiler.is_compiling() or compiler.is_exporting():\n'
                      '        return F.rms_norm(x, [2])\n'
                      '    with allow([]):\n'
                      '        return torch.is_autocast_enabled("cpu")\n'
                      'self.register_load_state_dict_pre_hook(print)\n')
    found = {(line, newer_api(dotted)) for _, line, dotted in torch_uses(module, root=tmp_path)
             if newer_api(dotted)}
    assert found == {(4, 'torch.serialization.safe_globals'), (6, 'torch.compiler.is_compiling'),
                     (6, 'torch.compiler.is_exporting'), (7, 'torch.nn.functional.rms_norm'),
                     (8, 'torch.serialization.safe_globals')}
    assert [use for use, _ in calls_with_newer_arguments(module, root=tmp_path)] == [
        ('example.py', 9, 'torch.is_autocast_enabled(device_type=...)')]
    assert list(newer_method_uses(module, root=tmp_path)) == [
        ('example.py', 10, '.register_load_state_dict_pre_hook')]


def test_no_torch_api_newer_than_2_1_outside_compat():
    offending = [f'{where}:{line}: {dotted} (torch {NEWER_TORCH_APIS[newer_api(dotted)]})'
                 for where, line, dotted in all_torch_uses() if newer_api(dotted)]
    offending += [f'{where}:{line}: {call} (torch {release})'
                  for path in source_files()
                  for (where, line, call), release in calls_with_newer_arguments(path)]
    offending += [f'{where}:{line}: {method} (a method torch 2.1 lacks)'
                  for path in source_files() for where, line, method in newer_method_uses(path)]
    assert not offending, ('torch APIs that torch 2.1 lacks, used outside mmfastervit/compat.py '
                           '(go through compat instead):\n' + '\n'.join(sorted(offending)))


def test_every_torch_api_used_exists_in_this_torch():
    missing = sorted({f'{where}:{line}: {dotted}' for where, line, dotted in all_torch_uses()
                      if not resolves(dotted)})
    assert not missing, f'not in torch {torch.__version__}:\n' + '\n'.join(missing)


def test_the_lists_of_newer_apis_match_this_torch():
    """Each listed API exists exactly on the torch releases the list says it does: on torch 2.1
    none does, on the newest supported torch all do (the methods are checked on those two)."""
    wrong = [f'{api} (torch {release})' for api, release in NEWER_TORCH_APIS.items()
             if resolves(api) != (compat.TORCH_VERSION >= compat.torch_version(release))]
    for (api, keyword, _), (release, probe) in NEWER_TORCH_ARGUMENTS.items():
        try:
            probe()
            accepted = True
        except TypeError:
            accepted = False
        if accepted != (compat.TORCH_VERSION >= compat.torch_version(release)):
            wrong.append(f'{api}({keyword}=...) (torch {release})')
    if compat.TORCH_VERSION in (compat.MIN_TORCH, compat.MAX_TESTED_TORCH):
        wrong += [f'{owner.__name__}.{method}' for owner, methods in NEWER_TORCH_METHODS.items()
                  for method in methods
                  if hasattr(owner, method) != (compat.TORCH_VERSION == compat.MAX_TESTED_TORCH)]
    assert not wrong, f'torch {torch.__version__} contradicts:\n' + '\n'.join(wrong)


@pytest.mark.parametrize('version, expected', [('2.1.2+cu121', (2, 1)), ('2.13.0', (2, 13)),
                                               ('2.6.0a0+git1234567', (2, 6)),
                                               ('2.10.0.dev20250101+cpu', (2, 10))])
def test_torch_version(version, expected):
    assert compat.torch_version(version) == expected


def test_installed_torch_is_in_the_supported_range():
    assert compat.MIN_TORCH <= compat.TORCH_VERSION <= compat.MAX_TESTED_TORCH


def test_is_compiling_only_while_dynamo_traces():
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    def step(x):
        return x + 1 if compat.is_compiling() else x - 1

    x = torch.zeros(2)
    assert torch.equal(step(x), x - 1)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(step, backend=recording_backend)(x), x + 1)
    assert len(graphs) == 1
    torch._dynamo.reset()


def test_autocast_dtype():
    assert compat.autocast_dtype('cpu') is None
    assert compat.autocast_dtype('cuda') is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_dtype('cpu') is torch.bfloat16
        assert compat.autocast_dtype('cuda') is None
    assert compat.autocast_dtype('cpu') is None


def test_exporting_switch_nests_and_survives_errors():
    assert not compat.is_exporting()
    with compat.exporting():
        assert compat.is_exporting()
        with compat.exporting():
            assert compat.is_exporting()
        assert compat.is_exporting()
    assert not compat.is_exporting()
    with pytest.raises(ZeroDivisionError), compat.exporting():
        1 / 0
    assert not compat.is_exporting()


def test_dynamo_onnx_export_is_refused_clearly_on_an_older_torch(monkeypatch):
    if compat.TORCH_VERSION >= compat.MIN_TORCH_DYNAMO_ONNX:
        compat.require_dynamo_onnx_export()
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 1))
    with pytest.raises(RuntimeError, match=r'needs torch >= 2\.6; this is torch '):
        compat.require_dynamo_onnx_export()


def test_torch_safe_globals_name_what_they_hold():
    allowed = compat.torch_safe_globals()
    for name in ('collections.OrderedDict', 'torch._utils._rebuild_tensor_v2',
                 'torch._utils._rebuild_parameter', 'torch.Size', 'torch.device', '_codecs.encode',
                 'builtins.set', 'builtins.bytearray', 'torch.bfloat16', 'torch.bool'):
        module, _, attribute = name.rpartition('.')
        assert allowed[name] is getattr(importlib.import_module(module), attribute), name


def run_setup(*args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(REPO / 'scripts' / 'setup.sh'), *args],
                          env=dict(os.environ, **settings), capture_output=True, text=True,
                          timeout=120)


def test_set_up_checks_that_mmcv_has_cuda_kernels():
    """The check the GPU set-up runs after installing mmcv, run on this environment: it fails,
    saying why, unless this mmcv was compiled with CUDA kernels."""
    from mmcv.ops import get_compiling_cuda_version
    result = run_setup('--check-cuda-ops', MMFASTERVIT_VENV=sys.prefix)
    if get_compiling_cuda_version() == 'not available':
        assert result.returncode == 1
        assert ('has no CUDA kernels: its ops were compiled for the CPU only'
                in result.stderr), result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert 'mmcv CUDA kernels: compiled with CUDA' in result.stdout


@pytest.mark.parametrize('torch_version', ['2.14.1', '2.0.1', '3.0.0'])
def test_set_up_refuses_a_torch_outside_the_supported_range(tmp_path, torch_version):
    result = run_setup(MMFASTERVIT_TORCH=torch_version, MMFASTERVIT_VENV=str(tmp_path / 'venv'))
    assert result.returncode == 1
    assert f'torch {torch_version} is outside the supported range, 2.1 to 2.13' in result.stderr
    assert not (tmp_path / 'venv').exists()


def test_set_up_refuses_a_cuda_tag_pytorch_does_not_use(tmp_path):
    result = run_setup('--cuda', '12.1', MMFASTERVIT_VENV=str(tmp_path / 'venv'))
    assert result.returncode == 1
    assert "such as cu118, cu121 or cu124, not '12.1'" in result.stderr
    assert not (tmp_path / 'venv').exists()
