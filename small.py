"""A network of the next assignments' kind, small enough for their budgets: batch norm, dropout and global average
pooling, no linear layer, 3,892 parameters. Its design, its receptive fields and its figures are in
docs/own-network.md.

    python budget.py small:SmallNet --scheduler onecycle --lr 0.6 --batch-size 128 --rotation 7"""
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, dropout=0.0):
    """A 3x3 convolution without bias (batch norm brings its own), batch norm, ReLU, and dropout where asked."""
    layers = [nn.Conv2d(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout else nn.Sequential(*layers)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            block(1, 8), block(8, 10),                    # strokes and their ends, at full resolution
            nn.MaxPool2d(2),                              # half the size: the 3x3s after it see twice as far
            block(10, 10, dropout=0.03), block(10, 10, dropout=0.03), block(10, 12, dropout=0.03))  # digit parts
        self.classify = nn.Conv2d(12, 10, 1, bias=False)  # one score per digit from the 12 averaged maps

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return F.log_softmax(self.classify(x).flatten(1), dim=1)
