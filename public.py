"""Three students' published networks for the under-8,000-parameter assignment, written again here from the
layer lists in their repositories, so that budget.py can check each one's claim over seeds. Each claim is one run:
the last three epochs of a single notebook. Each class carries the recipe its notebook states, as far as
s5.training.Recipe can say it. The augmentation here is always the original's, a random rotation and, on one image
in ten, the centre 22x22 scaled back up; each docstring says where its notebook's differs. What they give over five
seeds is in docs/own-network.md ("The frontier: one run against five seeds").

    python budget.py public:Madhur --seeds 5"""
import torch.nn as nn
import torch.nn.functional as F


def conv_relu_bn(cin, cout, bias=True, padding=0, dropout=0.0):
    """A 3x3 convolution, then ReLU, then batch norm (the order these notebooks use), and dropout where asked."""
    layers = [nn.Conv2d(cin, cout, 3, padding=padding, bias=bias), nn.ReLU(), nn.BatchNorm2d(cout)]
    return layers + [nn.Dropout(dropout)] if dropout else layers


class Published(nn.Module):
    """Layers in a row whose output is ten scores a digit, as each of these notebooks writes its forward pass."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return F.log_softmax(self.layers(x).flatten(1), dim=1)


class Madhur(Published):
    """Madhur-1/ERA-v1, S7/model.py, Net6: 5,196 parameters; claims 99.40, 99.43 and 99.40 in epochs 13-15
    (S7/Net6.ipynb). Its notebook's augmentation is the original's, with its rotation of 15 degrees."""
    recipe = {"epochs": 15, "batch_size": 64, "optimizer": "sgd", "lr": 0.04, "momentum": 0.9,
              "scheduler": "step", "step_size": 7, "gamma": 0.1, "rotation": 15}

    def __init__(self):
        super().__init__(*conv_relu_bn(1, 10), *conv_relu_bn(10, 10), *conv_relu_bn(10, 11), nn.MaxPool2d(2),
                         nn.Conv2d(11, 10, 1), *conv_relu_bn(10, 10), *conv_relu_bn(10, 10), *conv_relu_bn(10, 11),
                         nn.Conv2d(11, 10, 1), nn.AdaptiveAvgPool2d(1))


class Sunpau(Published):
    """sunpau/ERA_V1_S7, model.py, Net: 6,128 parameters; claims 99.42, 99.45 and 99.44 in epochs 13-15
    (S7_final_model.ipynb). Its notebook rotates by up to 7 degrees and crops nothing."""
    recipe = {"epochs": 15, "batch_size": 64, "optimizer": "adam", "lr": 0.01,
              "scheduler": "step", "step_size": 6, "gamma": 0.1, "rotation": 7}

    def __init__(self, dropout=0.1):
        plain = {"bias": False, "dropout": dropout}
        super().__init__(*conv_relu_bn(1, 8, padding=1, **plain), *conv_relu_bn(8, 16, **plain), nn.MaxPool2d(2),
                         nn.Conv2d(16, 8, 1, bias=False), *conv_relu_bn(8, 8, **plain), *conv_relu_bn(8, 8, **plain),
                         *conv_relu_bn(8, 16, **plain), *conv_relu_bn(16, 10, bias=False),
                         nn.Conv2d(10, 10, 3, bias=False), nn.AdaptiveAvgPool2d(1))


class Garima(Published):
    """garima-mahato/ERA_V3, Session7/model.py, Model_7 with dropout 0.05: 8,000 parameters; claims 99.40, 99.41
    and 99.42 in epochs 13-15 (Session7/S7_File3.ipynb). Its notebook rotates by up to 20 degrees, shifts by up to
    a tenth of the image and scales by 0.9 to 1.1, and crops nothing."""
    recipe = {"epochs": 15, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
              "scheduler": "step", "step_size": 8, "gamma": 0.1, "rotation": 20}

    def __init__(self, dropout=0.05):
        plain = {"bias": False, "dropout": dropout}
        super().__init__(*conv_relu_bn(1, 8, **plain), *conv_relu_bn(8, 14, **plain), nn.Conv2d(14, 10, 1, bias=False),
                         nn.MaxPool2d(2), *conv_relu_bn(10, 14, **plain), *conv_relu_bn(14, 16, **plain),
                         *conv_relu_bn(16, 20, **plain), nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(20, 16, 1, bias=False), nn.Conv2d(16, 10, 1, bias=False))
