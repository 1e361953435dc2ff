"""Weights in and out: detforge's safetensors files and restricted imports of foreign `.pt` checkpoints."""

from detforge.io.load import list_models, load, register_loader
from detforge.io.weights import read_weights, save_weights

__all__ = ["list_models", "load", "read_weights", "register_loader", "save_weights"]
