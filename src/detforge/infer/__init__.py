"""Inference: pre-processing, NMS and mapping boxes back to the original images."""
