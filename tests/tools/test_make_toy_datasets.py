import runpy
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO

TOOLS_DIR = Path(__file__).resolve().parents[2] / 'tools' / 'dataset'


def _run_tool(monkeypatch, name, *args):
    monkeypatch.setattr(sys, 'argv', [name, *args])
    runpy.run_path(str(TOOLS_DIR / name), run_name='__main__')


def test_make_toy_coco(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'toy_coco'
    args = ['--out', str(out), '--num-train', '3', '--num-val', '2', '--min-side', '64',
            '--max-side', '80', '--seed', '1']
    _run_tool(monkeypatch, 'make_toy_coco.py', *args)
    printed = capsys.readouterr().out
    assert f'Wrote 3 train and 2 val images to {out}' in printed
    assert str(out / 'annotations' / 'instances_train.json') in printed

    coco = COCO(str(out / 'annotations' / 'instances_val.json'))
    assert len(coco.imgs) == 2
    assert all(64 <= image[side] <= 80 for image in coco.imgs.values()
               for side in ('height', 'width'))
    assert len(list((out / 'train').glob('*.jpg'))) == 3

    with pytest.raises(FileExistsError):
        _run_tool(monkeypatch, 'make_toy_coco.py', *args)
    _run_tool(monkeypatch, 'make_toy_coco.py', *args, '--overwrite')


def test_make_toy_coco_object_options(tmp_path, monkeypatch):
    out = tmp_path / 'toy_coco'
    _run_tool(monkeypatch, 'make_toy_coco.py', '--out', str(out), '--num-train', '4', '--num-val',
              '0', '--min-side', '100', '--max-side', '100', '--max-objects', '1',
              '--object-size', '0.3', '0.35', '--background', 'plain')
    coco = COCO(str(out / 'annotations' / 'instances_train.json'))
    assert len(coco.anns) == 4
    # a shape of radius >= 30 px spans at least 30 * sqrt(2) px along its box diagonal
    assert all(ann['bbox'][2]**2 + ann['bbox'][3]**2 >= (2 * 30 / 2**0.5)**2 for ann in coco.anns.values())


def test_make_toy_coco_upright_is_generate_coco_upright(tmp_path, monkeypatch):
    from mmfastervit.datasets import generate_coco
    _run_tool(monkeypatch, 'make_toy_coco.py', '--out', str(tmp_path / 'tool'), '--num-train', '3',
              '--num-val', '0', '--min-side', '96', '--max-side', '96', '--upright')
    generate_coco(tmp_path / 'direct', num_train=3, num_val=0, image_size=96, upright=True)
    rotated = generate_coco(tmp_path / 'rotated', num_train=3, num_val=0, image_size=96)
    tool_annotations = (tmp_path / 'tool' / 'annotations' / 'instances_train.json').read_bytes()
    assert tool_annotations == (
        tmp_path / 'direct' / 'annotations' / 'instances_train.json').read_bytes()
    assert tool_annotations != rotated['train_ann_file'].read_bytes()


def test_make_toy_ade(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'toy_ade'
    _run_tool(monkeypatch, 'make_toy_ade.py', '--out', str(out), '--num-train', '2', '--num-val',
              '1', '--min-side', '64', '--max-side', '64')
    printed = capsys.readouterr().out
    assert f'Wrote 2 train and 1 val images to {out}' in printed
    for kind, suffix, count in (('images', 'jpg', 2), ('annotations', 'png', 2)):
        assert len(list((out / kind / 'training').glob(f'*.{suffix}'))) == count
        assert len(list((out / kind / 'validation').glob(f'*.{suffix}'))) == 1
