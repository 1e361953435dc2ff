"""Packaged backbones (importing registers them)."""

from detforge.models.backbones.csp_darknet import CSPDarknet

__all__ = ["CSPDarknet"]
