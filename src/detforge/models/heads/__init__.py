"""Packaged heads (importing registers them)."""

from detforge.models.heads.base import DetectionHead, HeadOutput
from detforge.models.heads.coupled import CoupledHead
from detforge.models.heads.decoupled import DecoupledHead, HybridHead

__all__ = ["CoupledHead", "DecoupledHead", "DetectionHead", "HeadOutput", "HybridHead"]
