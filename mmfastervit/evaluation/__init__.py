"""Evaluation metrics (registered in MMEngine's root ``METRICS``)."""
from .accuracy import Accuracy, topk_accuracy

__all__ = ['Accuracy', 'topk_accuracy']
