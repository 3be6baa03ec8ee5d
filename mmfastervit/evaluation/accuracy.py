"""Top-k classification accuracy."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor,
                  topk: Sequence[int] = (1, )) -> List[float]:
    """Percentage of samples whose label is among their ``k`` highest scores, for each ``k``.

    Args:
        scores: (N, num_classes) class scores.
        labels: (N, ) ground-truth class indices.
        topk: The ``k`` values; a ``k`` above ``num_classes`` counts every sample as correct.
    """
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f'expected (N, C) scores and (N,) labels, got {tuple(scores.shape)} and '
                         f'{tuple(labels.shape)}')
    ranked = scores.topk(min(max(topk), scores.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return [hits[:, :k].any(dim=1).float().mean().item() * 100 for k in topk]


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent, reported as ``accuracy/top{k}``.

    Expects predictions with ``pred_score`` (class scores) and ``gt_label``.

    Args:
        topk (Sequence[int]): Default: (1, 5).
        collect_device (str): Where results are gathered in distributed runs. Default: 'cpu'.
        prefix (str, optional): Metric name prefix. Default: 'accuracy'.
    """
    default_prefix = 'accuracy'

    def __init__(self,
                 topk: Sequence[int] = (1, 5),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)
        if not self.topk or any(not isinstance(k, int) or k < 1 for k in self.topk):
            raise ValueError(f'topk must be positive integers, got {topk}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(
                dict(pred_score=sample['pred_score'].cpu(), gt_label=int(sample['gt_label'])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        scores = torch.stack([result['pred_score'] for result in results])
        labels = torch.tensor([result['gt_label'] for result in results])
        accuracies = topk_accuracy(scores, labels, self.topk)
        return {f'top{k}': accuracy for k, accuracy in zip(self.topk, accuracies)}
