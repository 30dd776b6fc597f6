"""A network of the next assignments' kind, small enough for their budgets: batch norm, dropout and global average
pooling, no linear layer. Its design, its receptive fields and its figures are in docs/own-network.md.

    python budget.py small:SmallNet --scheduler onecycle --lr 0.1 --batch-size 128"""
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, kernel=3, padding=0, dropout=0.0):
    """A convolution without bias (batch norm brings its own), batch norm, ReLU, and dropout where asked."""
    layers = [nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout else nn.Sequential(*layers)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            block(1, 8), block(8, 12), nn.MaxPool2d(2), block(12, 8, kernel=1),
            block(8, 12, dropout=0.03), block(12, 16, dropout=0.03))
        self.classify = nn.Conv2d(16, 10, 1, bias=False)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return F.log_softmax(self.classify(x).flatten(1), dim=1)
