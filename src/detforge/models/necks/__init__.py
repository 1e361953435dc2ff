"""Packaged necks (importing registers them)."""

from detforge.models.necks.elan_pafpn import ELANPAFPN
from detforge.models.necks.pan_fpn import PANFPN

__all__ = ["ELANPAFPN", "PANFPN"]
