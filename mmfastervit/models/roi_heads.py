"""RoI heads for training detectors on a CPU budget.

Imported by the configs that use it (``custom_imports``), so that ``import mmfastervit`` does not
load MMDetection's model zoo.
"""
import copy
from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.utils import InstanceList
from mmengine.registry import MODELS
from torch import Tensor

# What a SamplingResult holds per positive RoI, in the order of pos_inds.
_PER_POSITIVE = ('pos_inds', 'pos_priors', 'pos_is_gt', 'pos_assigned_gt_inds', 'pos_gt_labels',
                 'pos_gt_bboxes')


def keep_positives(result: SamplingResult, keep: Tensor) -> SamplingResult:
    """A shallow copy of ``result`` whose positives are those at the indices ``keep``."""
    subset = copy.copy(result)
    for name in _PER_POSITIVE:
        setattr(subset, name, getattr(result, name)[keep])
    subset.num_pos = max(len(keep), 1)
    return subset


@MODELS.register_module()
class MaskSampledCascadeRoIHead(CascadeRoIHead):
    """:class:`CascadeRoIHead` whose mask heads train on at most ``max_mask_rois`` positive RoIs
    per image and stage, drawn at random from that stage's positives.

    The box heads still see every sampled RoI, and inference is unchanged: the model is the same.
    A mask head's 256-channel convolutions run at 14x14 over each RoI it trains on, four times the
    positions of a box head's 7x7, so with few sampled RoIs they take the largest share of a
    training step on a CPU; the masks of simple shapes are learnt from fewer.

    Args:
        max_mask_rois: The most positive RoIs per image each stage's mask head trains on. None:
            all of them, as :class:`CascadeRoIHead`.
    """

    def __init__(self, *args, max_mask_rois: Optional[int] = None, **kwargs) -> None:
        if max_mask_rois is not None and max_mask_rois < 1:
            raise ValueError(f'max_mask_rois must be None or at least 1, got {max_mask_rois!r}')
        super().__init__(*args, **kwargs)
        self.max_mask_rois = max_mask_rois

    def mask_loss(self, stage: int, x: Tuple[Tensor], sampling_results: List[SamplingResult],
                  batch_gt_instances: InstanceList) -> dict:
        if self.max_mask_rois is not None:
            sampling_results = [self._at_most_max_positives(result) for result in sampling_results]
        return super().mask_loss(stage, x, sampling_results, batch_gt_instances)

    def _at_most_max_positives(self, result: SamplingResult) -> SamplingResult:
        num_positives = len(result.pos_inds)
        if num_positives <= self.max_mask_rois:
            return result
        drawn = torch.randperm(num_positives, device=result.pos_inds.device)[:self.max_mask_rois]
        return keep_positives(result, drawn.sort().values)
