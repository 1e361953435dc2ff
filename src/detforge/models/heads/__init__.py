"""Packaged heads (importing registers them)."""

from detforge.models.heads.anchor_base import AnchorHead, AnchorHeadOutput
from detforge.models.heads.base import DetectionHead, HeadOutput
from detforge.models.heads.coupled import CoupledHead
from detforge.models.heads.decoupled import DecoupledHead, HybridHead
from detforge.models.heads.idetect import AuxAnchorHead, IDetect

__all__ = ["AnchorHead", "AnchorHeadOutput", "AuxAnchorHead", "CoupledHead", "DecoupledHead", "DetectionHead",
           "HeadOutput", "HybridHead", "IDetect"]
