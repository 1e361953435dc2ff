"""Detection evaluation: COCO metrics (faster-coco-eval), best-F1 operating point, confusion matrix, plots."""

from detforge.eval.evaluator import EvalResult, evaluate
from detforge.eval.plots import plot_confusion_matrix, plot_f1_curve, plot_pr_curves

__all__ = ["EvalResult", "evaluate", "plot_confusion_matrix", "plot_f1_curve", "plot_pr_curves"]
