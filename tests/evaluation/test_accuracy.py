import pytest
import torch
from mmengine.registry import METRICS

from mmfastervit.evaluation import Accuracy, topk_accuracy

# Rankings, best first: sample 0: 2, 0, 1, 3; sample 1: 1, 3, 0, 2; sample 2: 3, 2, 1, 0;
# sample 3: 0, 1, 2, 3.
SCORES = torch.tensor([[0.3, 0.1, 0.5, 0.05],
                       [0.2, 0.4, 0.1, 0.3],
                       [0.0, 0.1, 0.2, 0.7],
                       [0.9, 0.05, 0.03, 0.02]])
LABELS = torch.tensor([2, 3, 1, 3])  # ranked 1st, 2nd, 3rd and 4th


def test_topk_accuracy_on_hand_ranked_scores():
    assert topk_accuracy(SCORES, LABELS, (1, 2, 3, 4)) == pytest.approx([25.0, 50.0, 75.0, 100.0])


def test_k_above_the_number_of_classes_counts_every_sample():
    assert topk_accuracy(SCORES, LABELS, (1, 5)) == pytest.approx([25.0, 100.0])


def test_topk_accuracy_checks_shapes():
    with pytest.raises(ValueError, match=r'\(N, C\) scores'):
        topk_accuracy(SCORES, LABELS[:3])


def test_metric_reports_prefixed_percentages():
    metric = METRICS.build(dict(type='Accuracy', topk=(1, 2)))
    samples = [dict(pred_score=score, gt_label=torch.tensor([label]))
               for score, label in zip(SCORES, LABELS.tolist())]
    metric.process({}, samples[:2])
    metric.process({}, samples[2:])
    assert metric.evaluate(size=4) == pytest.approx({'accuracy/top1': 25.0, 'accuracy/top2': 50.0})


@pytest.mark.parametrize('topk', [(), (0, ), (1.5, )])
def test_metric_rejects_bad_topk(topk):
    with pytest.raises(ValueError, match='topk'):
        Accuracy(topk=topk)
