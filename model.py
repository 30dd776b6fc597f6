"""The ERA Session 5 network: four 3x3 convolutions and two fully connected layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """28x28 grey digit in, log-probabilities of the ten classes out (593,200 parameters)."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)     # 28 -> 26
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)    # 26 -> 24, pooled to 12
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3)   # 12 -> 10
        self.conv4 = nn.Conv2d(128, 256, kernel_size=3)  # 10 -> 8, pooled to 4
        self.fc1 = nn.Linear(4096, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Net expects a batch of shape (N, 1, 28, 28), got {tuple(x.shape)}; "
                "add the batch and channel dimensions with x.view(-1, 1, 28, 28) "
                "or resize the images to 28x28")
        # ReLU and max-pool stay functional so that torchsummary lists the original six rows.
        x = F.relu(self.conv1(x))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.conv3(x))
        x = F.relu(F.max_pool2d(self.conv4(x), 2))
        # flatten per sample: view(-1, 4096) would silently change the batch size on a bad input
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)
