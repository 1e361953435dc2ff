"""Packaged backbones (importing registers them)."""

from detforge.models.backbones.csp_darknet import CSPDarknet
from detforge.models.backbones.elan_net import ELANNet

__all__ = ["CSPDarknet", "ELANNet"]
