"""Digit classifiers of other kinds than Net, for every tool that reads a network. Each takes (N, 1, 28, 28) and
gives (N, 10) scores; the tests name them as zoo:ClassName."""
import torch

from small import SeparableNet


def net_with_zero_weights():
    """A Net whose every weight and bias is zero: it gives each digit a probability of 0.1."""
    from model import Net
    net = Net().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
    return net


class AssignmentNet(torch.nn.Module):
    """The next assignments' kind: batch norm, dropout, padding, a 1x1 convolution, global average pooling."""

    def __init__(self):
        super().__init__()
        nn = torch.nn

        def block(cin, cout, kernel=3, padding=0):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(), nn.Dropout(0.05))
        self.features = nn.Sequential(block(1, 8, padding=1), block(8, 12), nn.MaxPool2d(2), block(12, 8, kernel=1),
                                      block(8, 12), block(12, 12, padding=1), nn.AdaptiveAvgPool2d(1))
        self.classify = nn.Conv2d(12, 10, 1)

    def forward(self, x):
        return torch.log_softmax(self.classify(self.features(x)).flatten(1), dim=1)


def with_shifted_batch_norm(model):
    """`model` in eval mode, each batch norm's bias drawn from [-1, 1] (seeded): a network whose maps before and
    after its batch norm differ by more than the ReLU after them hides."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * 2 - 1)
    return model.eval()


class ResidualNet(torch.nn.Module):
    """Residual adds: one around two padded convolutions, one around a strided pair with a strided 1x1 shortcut;
    then a mean over every position (global average pooling as a reduction) and a linear layer. Plain scores."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(1, 8, 3)
        self.a1, self.a2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a2(torch.relu(self.a1(x))) + x)  # the identity second: a wrong rule taking it alone shows
        x = torch.relu(self.b2(torch.relu(self.b1(x))) + self.shortcut(x))
        return self.fc(x.mean(dim=(2, 3)))


class StridedDilatedNet(torch.nn.Module):
    """A strided and a dilated convolution, two branches joined by concatenation, max pooling, flatten, linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.c2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 6, 3)
        self.down = nn.Conv2d(6, 8, 3, stride=2)
        self.dilated = nn.Conv2d(8, 8, 3, dilation=2, padding=2)
        self.wide = nn.Conv2d(8, 8, 5, padding=2)  # reads the same span as the dilated one, all of it
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = torch.relu(self.down(torch.relu(self.c2(torch.relu(self.c1(x))))))
        x = torch.cat([torch.relu(self.dilated(x)), torch.relu(self.wide(x))], dim=1)
        return self.fc(torch.flatten(self.pool(x), 1))


OTHER_NETWORKS = {"zoo:AssignmentNet": AssignmentNet, "zoo:ResidualNet": ResidualNet,
                  "zoo:StridedDilatedNet": StridedDilatedNet,
                  "small:SeparableNet": SeparableNet}  # grouped (depthwise) convolutions
