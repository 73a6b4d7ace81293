"""Counting a model's parameters, for Question 2.3 and Question 3's run records."""
from __future__ import annotations

from torch import nn


def get_number_trainable_params(model: nn.Module) -> int:
    """Elements of every parameter with requires_grad (the statement's Q2.3 function, under its name)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
