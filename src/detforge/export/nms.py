"""Append ONNX NonMaxSuppression to an exported detector: `[B, N, 4 + C]` → `[B, max_det, 6]`.

Written as graph surgery on the ONNX model (not traced from PyTorch) so the same standard ops
run in every runtime. The steps mirror `detforge.infer.postprocess.non_max_suppression`:

1. each box keeps only its best class (others are zeroed), or — agnostic — one score column;
2. NonMaxSuppression per (image, class) with the IoU and score thresholds baked in;
3. per image, the `max_det` highest-scoring survivors, padded with all-zero rows.

Output rows are `x1, y1, x2, y2, score, class` (float); padding rows have score 0.
"""

from __future__ import annotations

from onnx import TensorProto, helper, numpy_helper

OUTPUT_NAME = "detections"


class _Builder:
    """Adds nodes and constants with unique names; knows which opsets take axes as inputs."""

    def __init__(self, graph, opset: int):
        self.graph, self.opset, self.count = graph, opset, 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"nms/{hint}_{self.count}"

    def const(self, value, dtype, hint: str = "c") -> str:
        import numpy as np

        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1,
           **attrs) -> str | list[str]:
        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.graph.node.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def unsqueeze(self, x: str, axis: int) -> str:
        import numpy as np

        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.const([axis], np.int64, "axis")])
        return self.op("Unsqueeze", [x], axes=[axis])

    def slice_last(self, x: str, start: int, end: int) -> str:
        import numpy as np

        return self.op("Slice", [x, self.const([start], np.int64), self.const([end], np.int64),
                                 self.const([2], np.int64)])


def append_nms(proto, opset: int, max_det: int = 300, iou: float = 0.7, conf: float = 0.25, agnostic: bool = False):
    """Replace the graph output `output0 [B, N, 4 + C]` by `detections [B, max_det, 6]`; returns `proto`."""
    import numpy as np

    graph = proto.graph
    (source,) = [o for o in graph.output]
    b = _Builder(graph, opset)
    x = source.name
    boxes = b.slice_last(x, 0, 4)  # [B, N, 4]
    scores = b.slice_last(x, 4, 2**62)  # [B, N, C]
    best_cls = b.op("ArgMax", [scores], axis=2, keepdims=1)  # [B, N, 1] int64
    best = b.op("GatherElements", [scores, best_cls], axis=2)  # [B, N, 1]
    if agnostic:
        nms_scores = b.op("Transpose", [best], perm=[0, 2, 1])  # [B, 1, N]
    else:
        only_best = b.op("Mul", [scores, b.op("Cast", [b.op("Equal", [scores, best])], to=TensorProto.FLOAT)])
        nms_scores = b.op("Transpose", [only_best], perm=[0, 2, 1])  # [B, C, N]
    selected = b.op("NonMaxSuppression", [boxes, nms_scores, b.const([max_det], np.int64, "max_out"),
                                          b.const([iou], np.float32, "iou"), b.const([conf], np.float32, "conf")],
                    center_point_box=0)  # [K, 3]: image, class, box
    image_box = b.op("Gather", [selected, b.const([0, 2], np.int64)], axis=1)  # [K, 2]
    sel_boxes = b.op("GatherND", [boxes, image_box])  # [K, 4]
    sel_scores = b.op("GatherND", [nms_scores, selected])  # [K]
    if agnostic:
        sel_cls = b.op("GatherND", [b.op("Squeeze", [best_cls, b.const([2], np.int64)]) if opset >= 13
                                    else b.op("Squeeze", [best_cls], axes=[2]), image_box])
    else:
        sel_cls = b.op("Gather", [selected, b.const(1, np.int64)], axis=1)  # [K]
    cls_f = b.op("Cast", [sel_cls], to=TensorProto.FLOAT)
    dets = b.op("Concat", [sel_boxes, b.unsqueeze(sel_scores, 1), b.unsqueeze(cls_f, 1)], axis=1)  # [K, 6]
    # One all-zero sentinel row (score -1 in the ranking) so that TopK always has k ≥ 1, even when K = 0.
    dets = b.op("Concat", [dets, b.const(np.zeros((1, 6)), np.float32, "pad_row")], axis=0)  # [K+1, 6]
    image_ids = b.op("Gather", [selected, b.const(0, np.int64)], axis=1)  # [K]
    batch = b.op("Gather", [b.op("Shape", [x]), b.const(0, np.int64)], axis=0)  # scalar B
    images = b.op("Range", [b.const(0, np.int64), batch, b.const(1, np.int64)])  # [B]
    mine = b.op("Equal", [b.unsqueeze(images, 1), b.unsqueeze(image_ids, 0)])  # [B, K]
    ranked = b.op("Where", [mine, b.unsqueeze(sel_scores, 0), b.const(-1.0, np.float32)])  # [B, K]
    batch_1 = b.unsqueeze(batch, 0)
    sentinel = b.op("Expand", [b.const([[-1.0]], np.float32), b.op("Concat", [batch_1, b.const([1], np.int64)],
                                                                      axis=0)])
    ranked = b.op("Concat", [ranked, sentinel], axis=1)  # [B, K+1]
    count = b.op("Gather", [b.op("Shape", [ranked]), b.const([1], np.int64)], axis=0)  # [1] = K+1
    k = b.op("Min", [count, b.const([max_det], np.int64)])
    values, order = b.op("TopK", [ranked, k], axis=1, largest=1, sorted=1, outputs=2)  # [B, k]
    picked = b.op("Gather", [dets, order], axis=0)  # [B, k, 6]
    valid = b.op("Cast", [b.op("Greater", [values, b.const(-0.5, np.float32)])], to=TensorProto.FLOAT)
    picked = b.op("Mul", [picked, b.unsqueeze(valid, 2)])
    missing = b.op("Sub", [b.const([max_det], np.int64), k])
    zeros = b.const([0, 0, 0, 0], np.int64)
    pads = b.op("Concat", [zeros, missing, b.const([0], np.int64)], axis=0)  # begin(B, k, 6), end(B, k, 6)
    graph.node.append(helper.make_node("Pad", [picked, pads, b.const(0.0, np.float32)], [OUTPUT_NAME],
                                       name="nms/pad_out", mode="constant"))
    graph.output.remove(source)
    out_batch = source.type.tensor_type.shape.dim[0]
    batch_dim = out_batch.dim_param or out_batch.dim_value or "batch"
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_dim, max_det, 6]))
    return proto
