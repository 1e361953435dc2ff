"""YOLOv7-family blocks: ELAN / E-ELAN, the MP block, SPPCSPC, ReOrg, RepConv(N), implicit knowledge.
Each block owns its `fuse()` (or is made of blocks that do)."""

from detforge.models.blocks.down import MPDown, ReOrg, downsample
from detforge.models.blocks.elan import EELAN, ELAN
from detforge.models.blocks.implicit import ImplicitA, ImplicitM, fold_implicit
from detforge.models.blocks.rep import RepConv, RepConvN, rep_conv
from detforge.models.blocks.spp import SPPCSPC

__all__ = ["EELAN", "ELAN", "SPPCSPC", "ImplicitA", "ImplicitM", "MPDown", "ReOrg", "RepConv", "RepConvN",
           "downsample", "fold_implicit", "rep_conv"]
