"""What `detforge val` adds for a quantized file: its mAP next to the float model's."""

from __future__ import annotations

import logging
from pathlib import Path

from detforge.export.quantize import MAX_MAP_DROP

logger = logging.getLogger(__name__)


def quantization_note(weights: str | Path, measured: float | None) -> str | None:
    """One line comparing this run's mAP50-95 of an INT8 file with the float32 figure recorded when it
    was exported (same dataset's val split); a warning is logged when INT8 is > 1 point lower.
    None for any other weights."""
    from detforge.export.formats import read_metadata

    try:
        meta = read_metadata(weights)
    except Exception:  # noqa: BLE001 - not an exported file: nothing to add
        return None
    if not meta or meta.get("quantization") is None or "map50_95_fp32" not in meta or measured is None:
        return None
    fp32 = float(meta["map50_95_fp32"])
    drop = fp32 - measured
    if drop > MAX_MAP_DROP:
        logger.warning("%s: INT8 mAP50-95 %.4f is %.1f points below float32's %.4f; export with --keep-fp32 head "
                       "or more --calib-images, or deploy float32", weights, measured, 100 * drop, fp32)
    return (f"INT8 ({meta['quantization']}, keep-fp32 {meta.get('keep_fp32', '?')}): mAP50-95 {measured:.4f}; "
            f"float32 {fp32:.4f} when exported ({-100 * drop:+.1f} points)")
