"""Weights in and out: detforge's safetensors files and restricted imports of foreign `.pt` checkpoints."""

from detforge.io.weights import load, read_weights, save_weights

__all__ = ["load", "read_weights", "save_weights"]
