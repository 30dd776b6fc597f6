"""The original's helpers under the original's names, as its notebook uses them: `from utils import *` gives device,
train, test, plot_loss, get_summary, GetCorrectPredCount and plt, plus the evaluation pictures. Each lives where its
job is (training.py, pictures.py, networks.py, env.py); this module only gathers them."""
import matplotlib.pyplot as plt  # noqa: F401 (the original's cells draw with plt)
import torch
import torchvision

from s5.env import check_versions, get_device, require  # noqa: F401
from s5.networks import get_summary  # noqa: F401
from s5.pictures import plot_confusion_matrix, plot_incorrect, plot_loss  # noqa: F401
from s5.training import count_correct, get_confusion_matrix, per_class_accuracy, test, train  # noqa: F401

check_versions({"torch": torch.__version__, "torchvision": torchvision.__version__})
require("torchsummary", "torchsummary")  # get_summary's table: named here, at the notebook's first import

device = get_device()


def GetCorrectPredCount(pPrediction, pLabels):
    return count_correct(pPrediction, pLabels).item()
