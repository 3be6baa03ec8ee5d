"""The UperNet + FasterViT ADE20K configs: they follow the training recipe, build, and run."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.structures import PixelData
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from PIL import Image

import mmfastervit  # noqa: F401  (registers FasterViT)
from mmfastervit.datasets import generate_ade
from mmfastervit.datasets.synthetic_ade import ADE_SCENE_CLASSES, OTHER

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'seg'
CHECKPOINT_ROOT = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
# Per variant: channels of the first stage (stage i has width * 2**i), stochastic depth, checkpoint.
VARIANTS = {
    '0': (64, 0.2, 'fastervit_0_224_1k.pth.tar'),
    '1': (80, 0.2, 'fastervit_1_224_1k.pth.tar'),
    '2': (96, 0.2, 'fastervit_2_224_1k.pth.tar'),
    '3': (128, 0.3, 'fastervit_3_224_1k.pth.tar'),
    '4': (196, 0.3, 'fastervit_4_224_1k.pth.tar'),
    '4-21k-224': (196, 0.42, 'fastervit_4_21k_224_w14.pth.tar'),
}
RUNNABLE = ('0', '1')  # small enough to run forward passes on a CPU in a unit test
LAYER_SCALED = ('3', '4', '4-21k-224')
NUM_CLASSES = 150


def config_path(arch: str, slide: bool = False) -> Path:
    suffix = '_slide' if slide else ''
    return CONFIG_DIR / f'upernet_fastervit-{arch}_8xb2-160k_ade20k-512x512{suffix}.py'


def build_segmentor(cfg: Config) -> torch.nn.Module:
    """The config's segmentor without pretrained weights and with BN instead of SyncBN (CPU)."""
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def random_batch(sizes, with_labels: bool) -> dict:
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for height, width in sizes:
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                    generator=generator))
        sample = SegDataSample(
            metainfo=dict(ori_shape=(height, width), img_shape=(height, width)))
        if with_labels:
            labels = torch.randint(0, NUM_CLASSES, (1, height, width), generator=generator)
            sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_every_variant_has_a_whole_and_a_slide_config():
    expected = {config_path(arch, slide).name for arch in VARIANTS for slide in (False, True)}
    assert {path.name for path in CONFIG_DIR.glob('*.py')} == expected


@pytest.mark.parametrize('arch', VARIANTS)
def test_config_follows_the_recipe(arch):
    width, drop_path, checkpoint = VARIANTS[arch]
    cfg = Config.fromfile(config_path(arch))

    assert cfg.custom_imports == dict(imports=['mmfastervit'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmseg'
    backbone = cfg.model.backbone
    assert backbone.type == 'FasterViT'
    assert backbone.arch == arch
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.drop_path_rate == drop_path
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=CHECKPOINT_ROOT + checkpoint)
    assert 'embed_dims' not in backbone  # nothing left over from the Swin base
    assert cfg.model.type == 'EncoderDecoder'
    assert cfg.model.decode_head.type == 'UPerHead'
    assert list(cfg.model.decode_head.in_channels) == [width * 2**i for i in range(4)]
    assert cfg.model.auxiliary_head.in_index == 2
    assert cfg.model.auxiliary_head.in_channels == width * 4
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == NUM_CLASSES
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'  # reverted to BN when not distributed
    assert cfg.model.test_cfg.mode == 'whole'

    assert cfg.optim_wrapper.type == 'OptimWrapper'
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 6e-5, 0.01)
    assert tuple(optimizer.betas) == (0.9, 0.999)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_cfg.max_iters == 160000
    crops = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop']
    assert [tuple(t.crop_size) for t in crops] == [(512, 512)]
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    assert cfg.train_dataloader.dataset.type == cfg.test_dataloader.dataset.type == 'ADE20KDataset'
    assert cfg.test_evaluator.type == 'IoUMetric'
    assert cfg.tta_model.type == 'SegTTAModel'


@pytest.mark.parametrize('arch', VARIANTS)
def test_slide_config_only_changes_the_test_mode(arch):
    whole = Config.fromfile(config_path(arch))
    slide = Config.fromfile(config_path(arch, slide=True))
    assert slide.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    slide.model.test_cfg = whole.model.test_cfg
    assert slide.to_dict() == whole.to_dict()


def test_tta_pipeline_rescales_the_test_scale():
    cfg = Config.fromfile(config_path('0'))
    load, tta = cfg.tta_pipeline
    assert load.type == 'LoadImageFromFile' and tta.type == 'TestTimeAug'
    resizes, flips = tta.transforms[:2]
    assert [tuple(t.scale) for t in resizes] == [(1024, 256), (1536, 384), (2048, 512),
                                                (2560, 640), (3072, 768), (3584, 896)]
    assert all(t.keep_ratio for t in resizes)
    assert sorted(t.prob for t in flips) == [0., 1.]


@pytest.mark.filterwarnings('ignore:Detected call of `scheduler.step\(\)` before')
def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    cfg = Config.fromfile(config_path('0'))
    base_lr = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optimizer))
        for scheduler in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()

    assert lrs[0] == pytest.approx(base_lr * 1e-6)
    assert lrs[750] == pytest.approx(base_lr / 2, rel=1e-3)
    assert lrs[1500] == pytest.approx(base_lr)
    # linear decay from 1500 to 0 at the last iteration
    assert lrs[80750] == pytest.approx(base_lr / 2, rel=1e-3)
    assert lrs[-1] == pytest.approx(0.0, abs=base_lr * 1e-4)
    assert all(a >= b for a, b in zip(lrs[1500:], lrs[1501:]))


@pytest.mark.parametrize('arch', VARIANTS)
def test_segmentor_builds_with_matching_widths_and_decay_groups(arch):
    cfg = Config.fromfile(config_path(arch))
    model = build_segmentor(cfg)
    for i, channels in enumerate(cfg.model.decode_head.in_channels):
        assert getattr(model.backbone, f'norm{i}').weight.shape == (channels, )
    assert model.auxiliary_head.in_channels == model.decode_head.in_channels[2]

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[id(param)] = group['weight_decay']
    no_decay_parts = ('norm', 'pos_mlp', 'gamma', '.bn.')
    for name, param in model.named_parameters():
        expected = 0.0 if any(part in name for part in no_decay_parts) else 0.01
        assert decay[id(param)] == pytest.approx(expected), name
    names = [name for name, _ in model.named_parameters()]
    assert any('rel_pos_mlp' in name for name in names)
    assert any('.pos_mlp.' in name and 'rel_pos' not in name for name in names)
    assert any('gamma' in name for name in names) == (arch in LAYER_SCALED)


@pytest.mark.parametrize('arch', RUNNABLE)
def test_segmentor_loss_and_predict(arch):
    torch.manual_seed(0)
    cfg = Config.fromfile(config_path(arch))
    cfg.model.data_preprocessor.size = (96, 128)  # pad training batches to this instead of 512
    model = build_segmentor(cfg)

    model.train()
    data = model.data_preprocessor(random_batch([(96, 128), (80, 120)], with_labels=True), True)
    assert data['inputs'].shape == (2, 3, 96, 128)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = sum(value for key, value in losses.items() if 'loss' in key)
    assert torch.isfinite(total) and total > 0
    total.backward()
    stem_grad = model.backbone.stem.conv1.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0

    model.eval()
    sizes = [(100, 150), (100, 150)]  # not a multiple of the backbone's stride or windows
    with torch.no_grad():
        results = model.test_step(random_batch(sizes, with_labels=False))
    assert len(results) == 2
    for result, size in zip(results, sizes):
        assert result.seg_logits.data.shape == (NUM_CLASSES, *size)
        prediction = result.pred_sem_seg.data
        assert prediction.shape == (1, *size)
        assert 0 <= prediction.min() and prediction.max() < NUM_CLASSES


def test_slide_inference_covers_an_image_larger_than_the_window():
    torch.manual_seed(0)
    cfg = Config.fromfile(config_path('0', slide=True))
    cfg.model.decode_head.channels = 32  # the real head's width makes 512 px windows slow on a CPU
    cfg.model.auxiliary_head.channels = 16
    model = build_segmentor(cfg).eval()
    window = tuple(cfg.model.test_cfg.crop_size)
    size = (window[0] + 60, window[1] + 100)  # 2 x 2 overlapping windows

    calls = []
    encode_decode = model.encode_decode

    def record_window(inputs, batch_img_metas):
        calls.append(tuple(inputs.shape[2:]))
        return encode_decode(inputs, batch_img_metas)

    model.encode_decode = record_window
    with torch.no_grad():
        [result] = model.test_step(random_batch([size], with_labels=False))
    assert calls == [window] * 4
    assert result.seg_logits.data.shape == (NUM_CLASSES, *size)
    assert result.pred_sem_seg.data.shape == (1, *size)


def test_toy_config_has_one_output_per_generated_scene_class(tmp_path):
    """The toy config's heads predict the classes of the generated scenes, and its datasets map
    each scene class's ADE20K annotation value to that class's output; unlabelled pixels alone are
    ignored."""
    cfg = Config.fromfile(str(CONFIG_DIR / 'toy' / 'upernet_fastervit-0_toy-ade-224x224.py'))
    classes = tuple(cfg.metainfo.classes)
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(classes)
    ade_values = {name: ADE20KDataset.METAINFO['classes'].index(name) + 1 for name in classes}
    assert ade_values == ADE_SCENE_CLASSES

    generate_ade(tmp_path, num_train=3, num_val=1, image_size=96, seed=0)
    init_default_scope('mmseg')
    load_annotations = [t for t in cfg.train_dataloader.dataset.pipeline
                        if t.type == 'LoadAnnotations']
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == classes
        dataset = DATASETS.build(
            dict(loader.dataset, data_root=str(tmp_path), pipeline=load_annotations))
        for index in range(len(dataset)):
            sample = dataset[index]
            annotation = np.asarray(Image.open(sample['seg_map_path']))
            labels = sample['gt_seg_map']
            assert (labels[annotation == OTHER] == 255).all()
            for name, value in ADE_SCENE_CLASSES.items():
                assert (labels[annotation == value] == classes.index(name)).all()
            assert set(np.unique(annotation)) - {OTHER} <= set(ADE_SCENE_CLASSES.values())
