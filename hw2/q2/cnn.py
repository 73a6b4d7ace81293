"""The CNN of Question 2 (both variants of the statement) and the trainable-parameter count.

Q2.1: conv1 1->8 (3x3, stride 1, pad 1) + ReLU + maxpool 2x2, conv2 8->16 (3x3, stride 1, pad 0) + ReLU +
maxpool 2x2. Q2.2 (`no_maxpool=True`): the same convolutions with stride 2 (pad 1, then pad 0) and no
pooling. Both give 16x6x6 = 576 features, then fc1 576->320 + ReLU + dropout, fc2 320->120 + ReLU, fc3
120->4 + LogSoftmax. Pooling has no parameters, so both variants have 224,892.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 4
IMAGE_SIZE = 28


class CNN(nn.Module):
    def __init__(self, dropout_prob: float = 0.7, no_maxpool: bool = False):
        super().__init__()
        self.no_maxpool = no_maxpool
        stride = 2 if no_maxpool else 1
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=stride, padding=0)
        self.pool = None if no_maxpool else nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(16 * 6 * 6, 320)
        self.drop = nn.Dropout(p=dropout_prob)
        self.fc2 = nn.Linear(320, 120)
        self.fc3 = nn.Linear(120, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional blocks: (B, 784) or (B, 1, 28, 28) -> (B, 16, 6, 6)."""
        x = x.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)  # batches arrive flattened, as in the skeleton
        x = F.relu(self.conv1(x))
        if self.pool is not None:
            x = self.pool(x)
        x = F.relu(self.conv2(x))
        if self.pool is not None:
            x = self.pool(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        x = self.drop(F.relu(self.fc1(x)))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)
