"""Task-alignment report: do a trained model's confidence and localisation agree on its positives?

TAL (assign/tal.py) picks positives by t = s^α · IoU^β, which assumes the anchors that classify an
object best also box it best. This report checks that on a trained model: for every positive the
assigner picks on a dataset's images (the anchors the model was trained to fire on), the class score
s of the target's class (σ(cls), times σ(obj) for objectness heads: the inference score) against the
IoU of the predicted box with the matched target, per class; the distribution of t; and the Spearman
rank correlation of s and IoU (1: the most confident positives are also the best boxed, 0: unrelated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from detforge.assign.tal import TaskAlignedAssigner
from detforge.assign.targets import pad_targets
from detforge.eval.plots import new_figure, save_figure
from detforge.ops.boxes import dfl_decode, distance_to_xyxy
from detforge.ops.iou import aligned_iou

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks, ties sharing their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 2 points or a constant input."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


@torch.no_grad()
def positive_pairs(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, cls: torch.Tensor,
                   batch_idx: torch.Tensor, assigner: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """For the positives the assigner picks on one batch: {"score", "iou", "cls"} (each `[K]`).

    images: float 0..1 `[B, 3, H, W]`; boxes `[T, 4]` xyxy pixels, cls `[T]`, batch_idx `[T]` (the loader's).
    The model's trunk runs in its current mode (eval for a trained model); the head gives its raw maps.
    """
    head = model.head
    was = head.training
    head.train()
    try:
        out = head(model.features(images))
    finally:
        head.train(was)
    anchors = out.anchor_points.float()
    pred = distance_to_xyxy(anchors, dfl_decode(out.box.float(), head.reg_max) * out.strides.float().unsqueeze(-1))
    scores = out.cls.float().sigmoid()
    if out.obj is not None:
        scores = scores * out.obj.float().sigmoid()
    gts = pad_targets(boxes.float(), cls, batch_idx, images.shape[0])
    assignment = (assigner or TaskAlignedAssigner())(scores, pred, anchors, *gts, out.strides)
    fg = assignment.fg_mask
    labels = gts.labels.gather(1, assignment.gt_idx)[fg]  # [K] class of each positive's target
    score = scores[fg].gather(1, labels.view(-1, 1)).squeeze(1)
    iou = aligned_iou(pred[fg], assignment.boxes[fg], kind="iou").clamp(0, 1)
    return {"score": score.cpu(), "iou": iou.cpu(), "cls": labels.cpu()}


@dataclass
class AlignmentReport:
    """Numbers of the report; `pairs` keeps the (score, IoU, class) arrays for the plot."""

    alpha: float
    beta: float
    positives: int
    spearman: float
    mean_score: float
    mean_iou: float
    metric_quantiles: dict[str, float]
    per_class: dict[str, dict[str, float]]
    pairs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "pairs"}

    def table(self) -> str:
        lines = [(f"task alignment on {self.positives:,} positives: Spearman(score, IoU) {self.spearman:.3f}  "
                 f"mean score {self.mean_score:.3f}  mean IoU {self.mean_iou:.3f}"),
                 f"  t = s^{self.alpha:g}·IoU^{self.beta:g} quantiles: " +
                 "  ".join(f"{k} {v:.3g}" for k, v in self.metric_quantiles.items()),
                 f"  {'class':<16} {'positives':>9} {'Spearman':>9} {'score':>7} {'IoU':>7}"]
        for name, row in self.per_class.items():
            lines.append(f"  {name:<16} {row['positives']:>9,} {row['spearman']:>9.3f} {row['mean_score']:>7.3f} "
                         f"{row['mean_iou']:>7.3f}")
        return "\n".join(lines)


def alignment_report(pairs: dict[str, np.ndarray], names: list[str], alpha: float = 0.5,
                     beta: float = 6.0) -> AlignmentReport:
    """The report from concatenated `positive_pairs` arrays."""
    score, iou, cls = (np.asarray(pairs[k]) for k in ("score", "iou", "cls"))
    metric = score ** alpha * iou ** beta
    per_class = {}
    for c in np.unique(cls):
        mine = cls == c
        name = names[int(c)] if int(c) < len(names) else str(int(c))
        per_class[name] = {"positives": int(mine.sum()), "spearman": spearman(score[mine], iou[mine]),
                           "mean_score": float(score[mine].mean()), "mean_iou": float(iou[mine].mean())}
    quantiles = {f"q{int(q * 100)}": float(np.quantile(metric, q)) for q in QUANTILES} if len(metric) else {}
    return AlignmentReport(alpha, beta, len(score), spearman(score, iou),
                           float(score.mean()) if len(score) else float("nan"),
                           float(iou.mean()) if len(iou) else float("nan"), quantiles, per_class,
                           {"score": score, "iou": iou, "cls": cls, "metric": metric})


def plot_alignment(report: AlignmentReport, names: list[str], path) -> None:
    """Left: class score vs IoU of every positive, coloured by class; right: histogram of t = s^α·IoU^β."""
    fig = new_figure((11.0, 4.5))
    left, right = fig.subplots(1, 2)
    p = report.pairs
    for i, c in enumerate(np.unique(p["cls"]) if len(p.get("cls", [])) else []):
        mine = p["cls"] == c
        left.scatter(p["iou"][mine], p["score"][mine], s=4, alpha=0.5, color=f"C{i % 10}",
                     label=names[int(c)] if int(c) < len(names) else str(int(c)))
    left.set(xlabel="IoU with the matched target", ylabel="class score", xlim=(0, 1), ylim=(0, 1),
             title=f"score vs IoU (Spearman {report.spearman:.2f})")
    if len(p.get("cls", [])):
        left.legend(markerscale=3)
    right.hist(p.get("metric", []), bins=40, color="C0")
    right.set(xlabel=f"t = s^{report.alpha:g} · IoU^{report.beta:g}", ylabel="positives",
              title="alignment metric")
    save_figure(fig, path)
