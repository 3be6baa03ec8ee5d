import pytest
import torch
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmfastervit.models.roi_heads import MaskSampledCascadeRoIHead, keep_positives
from tests.conftest import REPO

TOY_CONFIG = REPO / 'configs/det/toy/cascade-mask-rcnn_fastervit-0_fpn_4conv1fc-giou_toy-shapes.py'
IMAGE_SIZE = 128
NUM_SHAPES = (3, 2)


def head_config() -> dict:
    """The toy config's RoI head, with its training and test settings."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(TOY_CONFIG).model
    return dict(cfg.roi_head, train_cfg=cfg.train_cfg.rcnn, test_cfg=cfg.test_cfg.rcnn)


def build_head(max_mask_rois):
    return MODELS.build(dict(head_config(), max_mask_rois=max_mask_rois))


def batch():
    """FPN-like features of two 128 px images and proposals around their shapes, so that every
    stage has more positives than it samples."""
    generator = torch.Generator().manual_seed(0)
    features = tuple(
        torch.randn(2, 256, IMAGE_SIZE // stride, IMAGE_SIZE // stride, generator=generator)
        for stride in (4, 8, 16, 32, 64))
    samples = demo_mm_inputs(batch_size=2, image_shapes=(3, IMAGE_SIZE, IMAGE_SIZE),
                             num_items=list(NUM_SHAPES), num_classes=5,
                             with_mask=True)['data_samples']
    proposals = []
    for sample in samples:
        boxes = sample.gt_instances.bboxes.repeat(20, 1)
        jitter = torch.randn(boxes.shape, generator=generator)
        proposals.append(InstanceData(bboxes=boxes + jitter, scores=torch.ones(len(boxes))))
    return features, proposals, samples


def rois_seen(head, features, proposals, samples):
    """Losses, and how many RoIs each stage sampled, and its box head and mask head ran on, in
    one training step; the positives each stage sampled, per image."""
    counts = {'sampled': [], 'positives': []}

    def counter(name):
        def hook(module, inputs, output):
            counts.setdefault(name, []).append(inputs[0].shape[0])
        return hook

    def counting(sample):
        def sample_and_count(*args, **kwargs):
            result = sample(*args, **kwargs)
            counts['positives'].append(len(result.pos_inds))
            counts['sampled'].append(len(result.pos_inds) + len(result.neg_inds))
            return result
        return sample_and_count

    for stage in range(head.num_stages):
        head.bbox_head[stage].register_forward_hook(counter('box'))
        head.mask_head[stage].register_forward_hook(counter('mask'))
        head.bbox_sampler[stage].sample = counting(head.bbox_sampler[stage].sample)
    losses = head.loss(features, proposals, samples)
    num_images = len(samples)

    def per_stage(values):
        return [values[i:i + num_images] for i in range(0, len(values), num_images)]

    counts['sampled'] = [sum(images) for images in per_stage(counts['sampled'])]
    counts['positives'] = per_stage(counts['positives'])
    return losses, counts


def test_mask_heads_train_on_at_most_max_mask_rois_per_image():
    # A fresh batch for each: the RoI head pops the proposals' boxes.
    all_losses, everything = rois_seen(build_head(None), *batch())
    capped_losses, capped = rois_seen(build_head(2), *batch())

    for counts in (everything, capped):
        assert counts['box'] == counts['sampled']
        assert all(positives > 2 for stage in counts['positives'] for positives in stage)
    assert everything['mask'] == [sum(stage) for stage in everything['positives']]
    assert capped['mask'] == [2 * len(NUM_SHAPES)] * 3
    assert capped_losses.keys() == all_losses.keys()
    assert all(torch.isfinite(loss).all() for loss in capped_losses.values()
               if isinstance(loss, torch.Tensor))


def test_same_parameters_as_cascade_roi_head():
    head = build_head(4)
    assert isinstance(head, CascadeRoIHead) and type(head) is MaskSampledCascadeRoIHead
    plain_cfg = dict(head_config(), type='CascadeRoIHead')
    plain_cfg.pop('max_mask_rois')
    plain = MODELS.build(plain_cfg)
    assert {name: p.shape for name, p in head.state_dict().items()} == {
        name: p.shape for name, p in plain.state_dict().items()}


def test_keep_positives_leaves_the_sampling_result_alone():
    from mmdet.models.task_modules.samplers import SamplingResult
    result = SamplingResult.random(num_gts=3, num_preds=20, rng=0)
    while len(result.pos_inds) < 3:
        result = SamplingResult.random(num_gts=3, num_preds=20, rng=len(result.pos_inds) + 1)
    before = {name: value.clone() for name, value in vars(result).items()
              if isinstance(value, torch.Tensor)}
    subset = keep_positives(result, torch.tensor([0, 2]))
    assert torch.equal(subset.pos_inds, result.pos_inds[[0, 2]])
    assert torch.equal(subset.pos_priors, result.pos_priors[[0, 2]])
    assert torch.equal(subset.pos_assigned_gt_inds, result.pos_assigned_gt_inds[[0, 2]])
    assert torch.equal(subset.pos_gt_labels, result.pos_gt_labels[[0, 2]])
    assert torch.equal(subset.pos_gt_bboxes, result.pos_gt_bboxes[[0, 2]])
    assert subset.num_pos == 2 and torch.equal(subset.neg_inds, result.neg_inds)
    assert all(torch.equal(getattr(result, name), value) for name, value in before.items())


@pytest.mark.parametrize('max_mask_rois', [0, -1])
def test_max_mask_rois_below_one_is_refused(max_mask_rois):
    with pytest.raises(ValueError, match='max_mask_rois'):
        build_head(max_mask_rois)
