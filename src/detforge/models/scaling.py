"""Depth/width multipliers that turn one architecture into the n/s/m/l/x family."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of `divisor` (hardware-friendly widths)."""
    return int(math.ceil(value / divisor) * divisor)


@dataclass(frozen=True)
class Scaling:
    """Compound scaling of a model: block repeats × depth, channels × width capped at max_channels.

    Part configs are written for the unscaled (width 1.0, depth 1.0) model; parts call
    `channels()` / `repeats()` on every base value they receive.
    """

    depth: float = 1.0
    width: float = 1.0
    max_channels: int = 1024

    def channels(self, base: int) -> int:
        return make_divisible(min(base, self.max_channels) * self.width, 8)

    def repeats(self, base: int) -> int:
        return max(round(base * self.depth), 1) if base > 1 else base


# --- Compound scaling of concatenation-based models (YOLOv7 §3.3) -----------------------------

# Config keys (of the elan_net backbone, the elan_pafpn neck and the aux head) holding widths that
# follow a block's output — scaled together — and keys holding ELAN branch widths, which stay.
SCALED_WIDTHS = {
    "backbone": ("stage_down_channels", "stage_channels"),
    "neck": ("spp_channels", "reduce_channels", "td_channels", "down_channels", "bu_channels", "out_widths"),
    "aux": ("widths",),
}
ELAN_KEYS = ("elan_depth", "elan_every", "elan_width_ratio")


def elan_concat_width(hidden: int, depth: int, every: int, width_ratio: float) -> int:
    """Channels an ELAN concatenates before its transition conv: two stems plus every
    `every`-th of the `depth` chain outputs (see `blocks.elan.ELAN`)."""
    return 2 * hidden + len(range(depth - 1, -1, -every)) * round(hidden * width_ratio)


def concat_growth(before: dict[str, Any], after: dict[str, Any], hidden: int = 64) -> float:
    """Factor by which an ELAN's concatenation widens when its chain changes from `before` to
    `after` (dicts of elan_depth / elan_every / elan_width_ratio)."""

    def width(spec: dict[str, Any]) -> int:
        return elan_concat_width(hidden, spec["elan_depth"], spec.get("elan_every", 2),
                                 spec.get("elan_width_ratio", 1.0))

    return width(after) / width(before)


def compound_scale(config: dict[str, Any], backbone: dict[str, Any], neck: dict[str, Any]) -> dict[str, Any]:
    """Scale a YOLOv7-style model config (raw mapping) the compound way and return a new mapping.

    Depth first: the ELAN chains of the backbone / neck take the new `elan_*` settings. That
    widens each block's concatenation by a factor; the paper's rule is to scale the *transition*
    layer's output — and with it every width that follows a block output (stems, down-samplers,
    SPPCSPC, neck levels, output convs, aux heads) — by the same factor, so the model keeps the
    proportions it was designed with. ELAN branch widths (`stage_hidden`, `td_hidden`, `bu_hidden`)
    are the scaled block's inner widths and stay. Widths round up to multiples of 8.
    """
    out = copy.deepcopy(config)
    factors = {}
    for part, spec in (("backbone", backbone), ("neck", neck)):
        before = {k: config[part][k] for k in ELAN_KEYS if k in config[part]}
        factors[part] = concat_growth(before, spec)
        out[part].update(spec)
    if abs(factors["backbone"] - factors["neck"]) > 1e-9:
        raise ValueError(
            f"backbone and neck concatenations grow by different factors ({factors['backbone']:.3f} vs "
            f"{factors['neck']:.3f}); compound scaling needs one factor for the whole model"
        )
    factor = factors["backbone"]

    def scale(value):
        return [scale(v) for v in value] if isinstance(value, list) else make_divisible(value * factor, 8)

    out["backbone"]["stem"] = [[scale(c), k, s] for c, k, s in config["backbone"]["stem"]]
    for part, keys in SCALED_WIDTHS.items():
        for key in keys:
            if part in out and out[part] is not None and key in out[part]:
                out[part][key] = scale(config[part][key])
    return out
