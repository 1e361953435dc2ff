"""How validation turns an image file into the network's input: detforge's way, or the reference's.

A converted Ultralytics checkpoint scored by `detforge val` sees slightly different pixels than it
saw when Ultralytics validated it, in three places (measured in docs/predict.md):

- decode: detforge decodes a JPEG at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, which averages
  like an area filter) when the image is shrunk anyway, then resizes the rest of the way; the
  reference decodes every pixel and resizes once with bilinear interpolation, which on a large
  photo shrunk 6-12x samples only a few of the source pixels (aliasing);
- resized size: detforge rounds `side * ratio`, the reference rounds up (capped at `imgsz`);
- rectangular batches: detforge pads each batch to the next stride multiple, the reference adds
  half a stride first (so a 3:1 batch at 640 is 256 px high instead of 224).

Boxes map back with one ratio, `imgsz / long side`, in both ways. `Preprocess` holds the choices;
`PREPROCESS` names the two presets (`detforge val --preprocess reference` reproduces the reference's
input tensor exactly). Training is not affected: its samples are built by augmentation either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detforge.errors import ConfigError


@dataclass(frozen=True)
class Preprocess:
    """reduced_decode: decode JPEGs at 1/2, 1/4, 1/8 scale when shrinking. ceil_size: resized side is
    `min(ceil(side * ratio), imgsz)` instead of `round(side * ratio)`. rect_pad: strides added to a
    rectangular batch's side before it is rounded up to a stride multiple."""

    name: str = "detforge"
    reduced_decode: bool = True
    ceil_size: bool = False
    rect_pad: float = 0.0

    def resized_shape(self, h0: int, w0: int, ratio: float, imgsz: int) -> tuple[int, int]:
        """`(h, w)` an `(h0, w0)` image is resized to at `ratio` (each side at least 1 pixel)."""
        if self.ceil_size:
            if ratio == 1.0:
                return h0, w0
            return max(1, min(math.ceil(h0 * ratio), imgsz)), max(1, min(math.ceil(w0 * ratio), imgsz))
        return max(1, round(h0 * ratio)), max(1, round(w0 * ratio))

    def rect_side(self, relative: float, imgsz: int, stride: int) -> int:
        """A rectangular batch's side for images `relative` x `imgsz` long on that side."""
        return math.ceil(relative * imgsz / stride + self.rect_pad) * stride


PREPROCESS = {
    "detforge": Preprocess(),
    "reference": Preprocess("reference", reduced_decode=False, ceil_size=True, rect_pad=0.5),
}


def get_preprocess(preprocess: str | Preprocess | None) -> Preprocess:
    """A `Preprocess` from its preset name (None: detforge's)."""
    if preprocess is None:
        return PREPROCESS["detforge"]
    if isinstance(preprocess, Preprocess):
        return preprocess
    try:
        return PREPROCESS[preprocess]
    except KeyError:
        raise ConfigError(f"unknown preprocess {preprocess!r}; use one of: {', '.join(PREPROCESS)}") from None
