"""A network of the next assignments' kind, small enough for their budgets: batch norm, dropout and global average
pooling, no linear layer. Its design, its receptive fields and its figures are in docs/own-network.md.

    python budget.py small:SmallNet --scheduler onecycle --lr 0.1 --batch-size 128"""
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, kernel=3, dropout=0.0):
    """A convolution without bias (batch norm brings its own), batch norm, ReLU, and dropout where asked."""
    layers = [nn.Conv2d(cin, cout, kernel, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout else nn.Sequential(*layers)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            block(1, 8), block(8, 12),                    # strokes and their ends, at full resolution
            nn.MaxPool2d(2), block(12, 8, kernel=1),      # half the size, then fewer channels for the next 3x3s
            block(8, 10, dropout=0.03), block(10, 10, dropout=0.03), block(10, 12, dropout=0.03))  # digit parts
        self.classify = nn.Conv2d(12, 10, 1, bias=False)  # one score map per digit, averaged over the 6x6 left

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return F.log_softmax(self.classify(x).flatten(1), dim=1)
