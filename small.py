"""Two networks of the next assignments' kind, small enough for their budgets: batch norm, dropout and global
average pooling, no linear layer, under 4,000 parameters. SmallNet (3,892) is plain 3x3 convolutions, the faster
to train; SeparableNet (3,896) spends the same parameters on depthwise-separable 3x3s, so its later layers can be
wider, and ends higher. Neither holds 99.4% over the last epochs on every seed (SeparableNet on 1 of 10): they
are starts for a budget. Their design, receptive fields and figures are in docs/own-network.md. Both carry the
recipe they train with.

    python budget.py small:SeparableNet"""
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, dropout=0.0):
    """A 3x3 convolution without bias (batch norm brings its own), batch norm, ReLU, and dropout where asked."""
    layers = [nn.Conv2d(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout else nn.Sequential(*layers)


def separable(cin, cout, dropout):
    """A 3x3 that looks at each channel alone (cin*9 weights), then a 1x1 that mixes them (cin*cout): the
    same field as a full 3x3 for about a seventh of its weights here, each half with its batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(dropout))


class FeaturesThenAverage(nn.Module):
    """Convolutions, then global average pooling and a 1x1 convolution: one score per digit from each averaged
    map, so no linear layer and no dependence on where in the image a part was found."""

    # The recipe both train with, which budget.py and the quick look read (training.Recipe.of): small batches and
    # OneCycleLR with a high peak, and a gentler rotation than the original's 15 degrees (docs/own-network.md).
    recipe = {"epochs": 15, "batch_size": 128, "lr": 0.6, "scheduler": "onecycle", "rotation": 7}

    def __init__(self, features, channels):
        super().__init__()
        self.features = features
        self.classify = nn.Conv2d(channels, 10, 1, bias=False)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return F.log_softmax(self.classify(x).flatten(1), dim=1)


class SmallNet(FeaturesThenAverage):
    def __init__(self):
        super().__init__(nn.Sequential(
            block(1, 8), block(8, 10),                    # strokes and their ends, at full resolution
            nn.MaxPool2d(2),                              # half the size: the 3x3s after it see twice as far
            block(10, 10, dropout=0.03), block(10, 10, dropout=0.03), block(10, 12, dropout=0.03)),  # digit parts
            channels=12)


class SeparableNet(FeaturesThenAverage):
    def __init__(self):
        super().__init__(nn.Sequential(
            block(1, 8), block(8, 16),                    # strokes and their ends, at full resolution
            nn.MaxPool2d(2),                              # half the size: the 3x3s after it see twice as far
            separable(16, 24, dropout=0.03), separable(24, 24, dropout=0.03), separable(24, 24, dropout=0.03)),
            channels=24)
