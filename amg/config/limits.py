"""Bounds that several config classes' LIMITS share (the one range rule and its ceilings: amg.core.dataclass_io)."""

from __future__ import annotations

RATE = (0.0, 1.0)  # learning rates and weight decays: a step of more than the weights' own size learns nothing
LOSS_WEIGHT = (0.0, 1000.0)  # beyond it one term drowns the others, and fp16 losses overflow
FRACTION = (0.0, 1.0)
DROPOUT = (0.0, 0.9)  # a dropout of 1 drops every unit
NOISE = (0.0, 10.0)  # noise added to standardised inputs: beyond it the inputs are all noise
