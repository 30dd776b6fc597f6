import copy
import os
import platform

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from model import Net
from small import SeparableNet
from s5.data import MNIST_MEAN, MNIST_STD, normalize
from s5.fast import (DeviceLoader, FastPath, augment, bf16_time_ratio, choose_amp_dtype,
                     choose_cpu_precision, cpu_bf16_instructions, cpu_precision, draw_augmentation, grad_scaler,
                     keep_freed_memory, precision_choice, prepare_fast, uses_cuda_graph)
from s5.training import PRECISIONS, Recipe, Step, Training, train
from s5.training import test as evaluate  # pytest would collect a function named test

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def first(dataset, n):
    """The first n images of a data set, which the small runs here train or test on."""
    return torch.utils.data.Subset(dataset, range(n))


@pytest.mark.parametrize("angle", [-15.0, -11.3, -4.0, 0.0, 2.5, 9.7, 15.0])
@pytest.mark.parametrize("crop", [False, True])
def test_batched_augmentation_matches_torchvision(mnist_test, angle, crop):
    digits = mnist_test.data[:64].unsqueeze(1)  # uint8, as torchvision's tensor transforms take them
    ours = augment(digits.float() / 255, angles=torch.full((64,), angle), crop=torch.full((64,), crop)) * 255
    expected = []
    for digit in digits:
        if crop:
            digit = TF.resize(TF.center_crop(digit, [22, 22]), [28, 28], InterpolationMode.BILINEAR, antialias=True)
        expected.append(TF.rotate(digit, angle, InterpolationMode.NEAREST, fill=0))
    difference = (ours - torch.stack(expected).float()).abs()
    assert difference.max().item() <= 1.0  # within one grey level at every pixel
    if not crop:
        assert difference.max().item() == 0  # the rotation alone: exactly torchvision's, at every angle


GRID = torch.arange(-17.0, 17.01, 0.25)  # angles to compare against, a little beyond the recipe's +-15


def read_augmentation(images, digit):
    """(crop, angle) of each augmented copy of `digit`, read from its pixels: the nearest of augment's
    outputs over GRID, with and without the crop; where neighbouring angles give the same picture (nearest
    neighbour sampling), the middle of them. images: (N, 1, 28, 28) in [0, 1]."""
    angles, crop = GRID.repeat(2), torch.arange(2 * len(GRID)) >= len(GRID)
    bank = augment(digit.expand(len(angles), 1, 28, 28), angles, crop).flatten(1)
    distance = torch.cdist(images.flatten(1).float(), bank)
    nearest = distance <= distance.min(dim=1, keepdim=True).values + 1e-4
    return crop[distance.argmin(dim=1)], (nearest * angles).sum(dim=1) / nearest.sum(dim=1)


def assert_the_recipe(crop, angles):
    """One image in ten zoomed, angles filling +-15 degrees evenly and never beyond."""
    n = len(crop)
    assert abs(crop.float().mean().item() - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5, crop.float().mean()
    assert angles.abs().max() <= 15.25, f"an angle beyond the recipe's 15 degrees: {angles.abs().max()}"
    assert angles.min() <= -14, f"the angles reach -15 degrees: the least is {angles.min()}"
    assert angles.max() >= 14, f"the angles reach 15 degrees: the largest is {angles.max()}"
    counts = torch.histc(angles, bins=6, min=-15, max=15)  # 5-degree bins
    # around 0 several angles give the same picture, so only the two middle bins together are read reliably
    counts = torch.cat([counts[:2], counts[2:4].sum(dim=0, keepdim=True) / 2, counts[4:]])
    assert counts.min() > 0.75 * counts.mean(), counts


@pytest.mark.quick
def test_the_fast_loader_augments_each_image_as_the_recipe_says(mnist_train):
    """Read from the pixels the loader yields: 4096 copies of one digit, in batches of 512."""
    copies = torch.utils.data.Subset(mnist_train, [7] * 4096)
    torch.manual_seed(0)
    batches = [data * MNIST_STD + MNIST_MEAN for data, _ in DeviceLoader(copies, 512, "cpu", train=True)]
    crop, angles = read_augmentation(torch.cat(batches), mnist_train.data[7].float() / 255)
    assert_the_recipe(crop, angles)
    per_batch = crop.view(8, 512).sum(dim=1)
    assert per_batch.min() > 0, "a batch with no zoomed image: the crop is chosen per image"
    assert per_batch.max() < 512, "a batch zoomed whole: the crop is chosen per image"


def test_the_batched_augmentation_matches_the_seed_pipelines_pil_transforms_in_distribution(mnist_train):
    from s5.data import train_transforms
    digit = mnist_train.data[7]
    pil = Image.fromarray(digit.numpy())
    torch.manual_seed(0)
    augmented = torch.stack([train_transforms(pil) for _ in range(2000)]) * MNIST_STD + MNIST_MEAN
    crop, angles = read_augmentation(augmented, digit.float() / 255)
    assert_the_recipe(crop, angles)


def test_augmentation_draws_cover_the_recipe():
    torch.manual_seed(0)
    angles, crop = draw_augmentation(200_000)
    assert angles.min() >= -15.0, angles.min()
    assert angles.max() <= 15.0, angles.max()
    counts = torch.histc(angles, bins=30, min=-15.0, max=15.0)
    assert counts.min() > 0.9 * counts.mean()  # every degree of the range is used, evenly
    share = crop.float().mean().item()
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5  # four standard errors


@pytest.mark.quick
def test_the_recipes_rotation_reaches_the_fast_paths_train_batches(mnist_train):
    path = FastPath(first(mnist_train, 256), None, "cpu", 256)
    plain = path.train_loader.images.float().div(255)
    for rotation in (7.0, 0.0):
        path.training(Net(), Recipe(rotation=rotation))
        torch.manual_seed(3)
        batch, _ = path.train_loader.batch(slice(0, 256))
        torch.manual_seed(3)
        angles, crop = draw_augmentation(256, rotation=rotation)
        assert torch.equal(batch, normalize(augment(plain, angles, crop)))
        assert angles.abs().max() <= rotation, f"an angle beyond the recipe's {rotation}"
        assert rotation == 0 or angles.abs().max() > 0.9 * rotation, f"the angles fill the recipe's {rotation}"
    torch.manual_seed(3)
    assert not torch.equal(batch, normalize(augment(plain, *draw_augmentation(256))))  # not the original's 15


def test_augment_without_arguments_uses_one_fresh_draw(mnist_test):
    images = mnist_test.data[:32].unsqueeze(1).float() / 255
    torch.manual_seed(5)
    drawn = augment(images)
    torch.manual_seed(5)
    assert torch.equal(drawn, augment(images, *draw_augmentation(32)))
    assert not torch.equal(drawn, images)


@pytest.mark.quick
def test_device_loader_batches(mnist_train):
    subset = first(mnist_train, 1000)
    loader = DeviceLoader(subset, 256, "cpu", train=True)
    torch.manual_seed(0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(t) for _, t in batches] == [256, 256, 256, 232]
    data = batches[0][0]
    assert data.shape == (256, 1, 28, 28), data.shape
    assert data.dtype == torch.float32, data.dtype
    assert data.is_contiguous(memory_format=torch.channels_last), "with one channel a batch is channels_last"
    assert data.is_contiguous(), "and NCHW at once"
    assert data.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD)  # normalized, zero fill stays black
    targets = torch.cat([t for _, t in batches])
    assert sorted(targets.tolist()) == sorted(mnist_train.targets[:1000].tolist())  # each sample once
    assert not torch.equal(targets, mnist_train.targets[:1000])  # shuffled
    torch.manual_seed(0)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again)), "the same seed, the same images"
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again)), "the same seed, the same order"


@pytest.mark.quick
def test_device_loader_for_testing_only_normalizes(mnist_test):
    loader = DeviceLoader(mnist_test, 512, "cpu")
    data, target = next(iter(loader))
    expected = (mnist_test.data[:512].float().unsqueeze(1) / 255 - MNIST_MEAN) / MNIST_STD
    torch.testing.assert_close(data, expected)
    assert torch.equal(target, mnist_test.targets[:512])
    torch.manual_seed(0)
    expected_draw = torch.rand(4)
    torch.manual_seed(0)
    batches = list(loader)
    assert torch.equal(torch.rand(4), expected_draw)  # a test pass leaves the training's random stream alone
    assert [len(t) for _, t in batches] == [512] * 19 + [272]  # every test image once, in order
    assert torch.equal(torch.cat([t for _, t in batches]), mnist_test.targets)


@pytest.mark.parametrize("device_type, capability, expected", [
    ("cuda", (9, 0), torch.bfloat16),  # H100
    ("cuda", (8, 0), torch.bfloat16),  # A100, the first with bf16 tensor cores
    ("cuda", (8, 9), torch.bfloat16),  # RTX 40
    ("cuda", (7, 5), torch.float16),   # T4, Colab's free GPU: bf16 only emulated
    ("cuda", (7, 0), torch.float16),   # V100
    ("cuda", (6, 1), torch.float16),   # GTX 10
    ("mps", None, None),
])
@pytest.mark.quick
def test_the_precision_follows_what_the_gpu_computes_natively(device_type, capability, expected):
    assert choose_amp_dtype(device_type, capability)[0] is expected


def never_measured():
    raise AssertionError("the CPU's flags decide here: nothing should be measured")


@pytest.mark.quick
def test_a_cpu_with_amx_trains_in_bf16_without_measuring():
    assert choose_cpu_precision("AMX", never_measured) == (torch.bfloat16, "bf16: this CPU has AMX")


@pytest.mark.quick
def test_a_cpu_without_bf16_instructions_trains_in_fp32_without_measuring():
    """AVX2 (Zen 3) or AVX-512 without BF16 (Cascade Lake): oneDNN would emulate bf16, far slower."""
    assert choose_cpu_precision(None, never_measured) == (None, "fp32: this CPU has no bf16 instructions")


@pytest.mark.quick
@pytest.mark.parametrize("ratio, expected", [(0.5, torch.bfloat16), (0.99, torch.bfloat16), (1.0, None), (1.9, None)])
def test_avx512_bf16_without_amx_trains_in_whichever_precision_measured_faster(ratio, expected):
    """A Zen 4 computes bf16 in about half of fp32's time; an Intel Xeon with the same flag in about twice."""
    dtype, why = choose_cpu_precision("AVX-512 BF16", lambda: ratio)
    assert dtype is expected, why
    assert f"{ratio:.2f}x fp32's time" in why, "the reason names the measurement"


@pytest.mark.quick
def test_the_probe_measures_a_real_convolution_in_both_precisions():
    ratio = bf16_time_ratio(batch=4, channels=4, rounds=3)
    assert ratio > 0, f"bf16's time over fp32's: {ratio}"
    assert ratio != 1.0, "two measured times are never equal to the last bit"


@pytest.mark.quick
def test_the_probe_leaves_the_seeded_random_stream_alone():
    """It may run between torch.manual_seed and the first training step: the run must draw what it would have."""
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    bf16_time_ratio(batch=2, channels=2, rounds=1)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.quick
def test_the_precision_can_be_overridden(monkeypatch):
    monkeypatch.delenv("S5_PRECISION", raising=False)
    assert precision_choice("cpu") == cpu_precision(), "auto is the CPU's own choice"
    for name, dtype in PRECISIONS.items():
        assert precision_choice("cpu", name) == (dtype, f"{name}: asked for"), f"the argument {name}"
        monkeypatch.setenv("S5_PRECISION", name)
        assert precision_choice("cpu")[0] is dtype, f"S5_PRECISION={name}"
    assert precision_choice("cpu", "bf16")[0] is torch.bfloat16, "the argument wins over the variable"
    monkeypatch.setenv("S5_PRECISION", "float8")
    with pytest.raises(ValueError, match="Unknown precision 'float8' .*S5_PRECISION.*bf16, fp16, fp32 or auto"):
        precision_choice("cpu")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory sets glibc's malloc options")
def test_glibc_takes_the_cpu_allocator_setting():
    assert keep_freed_memory() is True  # both options accepted: freed step memory stays in the heap


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU's flags from Linux's /proc/cpuinfo")
def test_the_bf16_instructions_are_what_the_cpu_says_it_has():
    """AMX first, then AVX-512 BF16, from the CPU's own flags; on an AVX2 CPU (Zen 3) both are absent."""
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    expected = "AMX" if "amx_tile" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else None
    assert cpu_bf16_instructions() == expected


def test_the_fast_model_has_channels_last_weights():
    model = prepare_fast(Net(), "cpu")
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    assert not Net().conv2.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.quick
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_trains_on_this_cpu(mnist_test, precision):
    """Each branch of the training loop on two tiny batches, so that a CPU that only emulates bf16
    or fp16 still runs them in a second."""
    torch.manual_seed(0)
    model, amp_dtype = prepare_fast(Net(), "cpu"), PRECISIONS[precision]
    scaler = grad_scaler("cpu", amp_dtype)
    assert scaler.is_enabled() == (precision == "fp16")  # only fp16 gradients need loss scaling
    batches = list(DeviceLoader(first(mnist_test, 8), 4, "cpu", train=True))
    before = model.conv1.weight.detach().clone()
    with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
        assert model.conv2(model.conv1(batches[0][0])).dtype == (amp_dtype or torch.float32)
        low = nn.CrossEntropyLoss()(model(batches[0][0]), batches[0][1]).item()
    exact = nn.CrossEntropyLoss()(model(batches[0][0]), batches[0][1]).item()
    # the same loss as float32, to within the dtype's precision (bf16 keeps 8 bits of mantissa, fp16 11)
    assert low == pytest.approx(exact, rel={"fp32": 0, "bf16": 0.03, "fp16": 0.005}[precision])
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = Step(model, "cpu", optimizer, nn.CrossEntropyLoss(), amp_dtype, scaler)
    accuracy, loss = train(model, "cpu", batches, optimizer, nn.CrossEntropyLoss(), step, 1)
    assert 0 < loss < 10, loss
    assert 0 <= accuracy <= 100, accuracy
    assert model.conv1.weight.dtype == torch.float32  # the weights stay float32 in every precision
    assert not torch.equal(model.conv1.weight, before)  # it took its steps


@needs_cuda
def test_train_on_cuda_in_its_precision(mnist_test):
    model, amp_dtype = prepare_fast(Net().to("cuda"), "cuda"), precision_choice("cuda", "auto")[0]
    capability = torch.cuda.get_device_capability()
    assert amp_dtype is (torch.bfloat16 if capability >= (8, 0) else torch.float16)
    loader = DeviceLoader(first(mnist_test, 1024), 256, "cuda", train=True)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = Step(model, "cuda", optimizer, nn.CrossEntropyLoss(), amp_dtype, grad_scaler("cuda", amp_dtype))
    accuracy, loss = train(model, "cuda", loader, optimizer, nn.CrossEntropyLoss(), step, 1)
    assert 0 <= accuracy <= 100, accuracy
    assert 0 < loss < 10, loss


@needs_cuda
def test_a_non_finite_loss_on_cuda_names_the_batch(mnist_test):
    model, amp_dtype = prepare_fast(Net().to("cuda"), "cuda"), precision_choice("cuda", "auto")[0]
    batches = list(DeviceLoader(first(mnist_test, 512), 64, "cuda"))
    batches[5][0][0, 0, 5, 5] = float("nan")
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with pytest.raises(FloatingPointError, match="nan at epoch 4, batch 5"):
        train(model, "cuda", batches, optimizer, nn.CrossEntropyLoss(),
              Step(model, "cuda", optimizer, nn.CrossEntropyLoss(), amp_dtype), 4)


class WithBatchNormAndDropout(nn.Module):
    """A network of the next assignment's kind: batch norm, dropout, padding, a 1x1 and a strided convolution,
    a residual add and global average pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.1))
        self.down = nn.Conv2d(8, 12, 3, stride=2)
        self.squeeze = nn.Conv2d(12, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.branch(x)
        return nn.functional.adaptive_avg_pool2d(self.squeeze(torch.relu(self.down(x))), 1).flatten(1)


@pytest.mark.parametrize("device, amp_dtype, network, recipe, graphed", [
    ("cuda", torch.bfloat16, Net, Recipe(), True),
    ("cuda", None, Net, Recipe(), True),
    ("cuda", torch.float16, Net, Recipe(), False),  # the gradient scaler skips steps from the host
    ("cpu", None, Net, Recipe(), False),
    ("mps", None, Net, Recipe(), False),
    ("cuda", None, WithBatchNormAndDropout, Recipe(), False),  # fresh masks, running statistics
    ("cuda", None, Net, Recipe(scheduler="onecycle"), False),
    ("cuda", None, Net, Recipe(optimizer="adam"), False),
], ids=["bf16", "fp32", "fp16", "cpu", "mps", "batch-norm-dropout", "onecycle", "adam"])
def test_cuda_graphs_only_where_the_step_has_been_shown_to_replay_faithfully(device, amp_dtype, network, recipe,
                                                                            graphed):
    assert uses_cuda_graph(device, amp_dtype, network(), recipe) is graphed


def test_the_recipes_sgd_in_its_graph_form_steps_as_plain_sgd_and_keeps_the_learning_rate_in_a_tensor():
    """What CudaGraphSteps needs from Recipe.make_optimizer, checked on the CPU: the same steps as optim.SGD with
    momentum, and for a graph a fused SGD whose learning rate is a tensor that StepLR fills in place."""
    torch.manual_seed(0)
    models = [Net() for _ in range(3)]
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    recipe = Recipe(step_size=1, gamma=0.5)
    optimizers = [optim.SGD(models[0].parameters(), lr=0.01, momentum=0.9),
                  recipe.make_optimizer(models[1].parameters()),
                  recipe.make_optimizer(models[2].parameters(), lr_tensor=True)]
    assert optimizers[1].param_groups[0]["lr"] == 0.01, "the eager SGD's learning rate, a number"
    assert not optimizers[1].param_groups[0]["fused"], "the eager SGD is PyTorch's plain one"
    lr = optimizers[2].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor), "the graph's learning rate is a tensor"
    assert optimizers[2].param_groups[0]["fused"], "the graph's SGD is the fused one"
    schedulers = [recipe.make_scheduler(optimizer, 1) for optimizer in optimizers]
    images, targets = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(3):
        for model, optimizer, scheduler in zip(models, optimizers, schedulers):
            optimizer.zero_grad()
            nn.functional.nll_loss(model(images), targets).backward()
            optimizer.step()
            scheduler.step()
    assert optimizers[2].param_groups[0]["lr"] is lr, "StepLR fills the same tensor"
    assert lr.item() == pytest.approx(0.01 / 8), "halved at each of three epochs"
    for model in models[1:]:
        for p, q in zip(model.parameters(), models[0].parameters()):
            torch.testing.assert_close(p, q)


def one_epoch(training, device, epoch=1):
    """One epoch as the notebook runs it, from what the door gave."""
    return train(training.model, device, training.batches, training.optimizer, training.criterion, training.step,
                 epoch)


@pytest.fixture
def door(mnist_train, mnist_test):
    """The fast path's door on the CPU: 256 training images in batches of 64 and 100 test images."""
    return FastPath(first(mnist_train, 256), first(mnist_test, 100), "cpu", 64)


RECIPE = Recipe(lr=0.02, momentum=0.8, step_size=3, gamma=0.5)  # none of them the original's


@pytest.mark.quick
def test_the_door_trains_and_tests_on_the_loaders_it_made_first(door):
    """The notebook's sample cell draws from the loaders before the model is made; the run must use those."""
    training = door.training(Net(), RECIPE, precision="fp32")
    assert training.test_loader is door.test_loader, "the test loader"
    assert training.batches is door.train_loader, "the train loader"
    assert not training.cuda_graph, "no CUDA graph on a CPU"
    assert door.train_loader.train, "the train loader augments and shuffles"
    assert not door.test_loader.train, "the test loader only normalizes"
    assert (len(door.train_loader), len(door.test_loader)) == (4, 2), "256 and 100 images in batches of 64"


@pytest.mark.quick
def test_the_door_builds_the_step_from_the_runs_own_parts(door):
    training = door.training(Net(), RECIPE, precision="fp32")
    step = training.step
    assert isinstance(step, Step), type(step)
    assert (step.model, step.optimizer, step.criterion) == (training.model, training.optimizer, training.criterion)
    assert not step.scaler.is_enabled(), "fp32 needs no loss scaling"
    assert step.scheduler is None, "StepLR steps once an epoch, outside the step"
    assert isinstance(training.criterion, nn.CrossEntropyLoss), type(training.criterion)


@pytest.mark.quick
def test_the_door_gives_the_optimizer_and_scheduler_the_recipes_numbers(door):
    training = door.training(Net(), RECIPE, precision="fp32")
    group = training.optimizer.param_groups[0]
    assert isinstance(training.optimizer, optim.SGD), type(training.optimizer)
    assert (group["lr"], group["momentum"]) == (0.02, 0.8), "SGD's learning rate and momentum"
    assert group["params"] == list(training.model.parameters()), "the model's own parameters"
    assert (training.scheduler.scheduler.step_size, training.scheduler.scheduler.gamma) == (3, 0.5), "StepLR's"
    for _ in range(3):
        training.scheduler.step()
    assert group["lr"] == pytest.approx(0.01), "StepLR halves the rate after 3 epochs"


@pytest.mark.quick
def test_one_epoch_from_the_door_trains_the_model_in_channels_last(door):
    torch.manual_seed(0)
    training = door.training(Net(), RECIPE, precision="fp32")
    assert training.model.conv1.weight.is_contiguous(memory_format=torch.channels_last), "the layout"
    before = training.model.conv1.weight.detach().clone()
    accuracy, loss = one_epoch(training, "cpu")
    assert not torch.equal(before, training.model.conv1.weight), "the weights moved"
    assert 0 < accuracy <= 100, accuracy
    assert loss > 0, loss


@pytest.mark.quick
@pytest.mark.parametrize("precision, dtype, scaled", [("fp32", None, False), ("bf16", torch.bfloat16, False),
                                                      ("fp16", torch.float16, True)])
def test_the_door_trains_in_the_precision_asked_for(door, precision, dtype, scaled):
    training = door.training(Net(), Recipe(), precision=precision)
    assert training.amp_dtype is dtype, "the run's autocast dtype"
    assert training.step.amp_dtype is dtype, "the step's autocast dtype"
    assert training.precision == precision, training.precision
    assert training.precision_reason == f"{precision}: asked for", training.precision_reason
    assert training.step.scaler.is_enabled() is scaled, "only fp16 needs its gradient scaler"


@pytest.mark.quick
def test_a_door_without_test_images_has_no_test_loader(mnist_train):
    assert FastPath(first(mnist_train, 64), None, "cpu", 64).training(Net()).test_loader is None


@pytest.mark.quick
def test_adam_and_onecycle_reach_the_step_which_moves_the_learning_rate_every_batch(door):
    recipe = Recipe(epochs=2, optimizer="adam", lr=0.003, scheduler="onecycle")
    training = door.training(WithBatchNormAndDropout(), recipe, precision="fp32")
    assert isinstance(training.optimizer, optim.Adam), type(training.optimizer)
    assert training.step.scheduler is training.scheduler.scheduler, "OneCycleLR steps inside the step"
    rates = []
    for _ in range(2):
        one_epoch(training, "cpu")
        rates.append(training.optimizer.param_groups[0]["lr"])
    assert training.scheduler.scheduler.last_epoch == 8, "one scheduler step per batch: 2 epochs of 4 batches"
    assert rates[1] < rates[0] < 0.003  # past its peak, annealing to the end


@pytest.mark.quick
def test_batch_norm_networks_keep_the_plain_layout_on_the_cpu_and_learn_their_statistics(door):
    torch.manual_seed(0)
    training = door.training(WithBatchNormAndDropout(), Recipe(lr=0.05), precision="fp32")
    weight = training.model.branch[0].weight  # 8 -> 8 channels: the two layouts differ
    assert weight.is_contiguous(), "NCHW"
    assert not weight.is_contiguous(memory_format=torch.channels_last), "not channels_last"
    statistics = training.model.stem[1].running_mean.clone()
    one_epoch(training, "cpu")
    assert not torch.equal(statistics, training.model.stem[1].running_mean)  # the running statistics were updated
    evaluate(training.model, "cpu", training.test_loader, training.criterion)
    assert not training.model.training  # tested in eval mode: the running statistics, no dropout
    one_epoch(training, "cpu")
    assert training.model.training


@pytest.mark.quick
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("network", [Net, WithBatchNormAndDropout, SeparableNet])
def test_the_fast_path_step_gives_the_seed_pipelines_losses(mnist_train, network, precision):
    """The same network, weights and batches, stepped by the original pipeline's plain Step and by the fast path's:
    the same losses, step after step, within the precision's tolerance (dropout switched off, so that both see
    one network)."""
    torch.manual_seed(0)
    model = network()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    batches = list(DeviceLoader(first(mnist_train, 192), 64, "cpu", train=True))
    plain = Training.plain(copy.deepcopy(model), "cpu", batches, None, Recipe(lr=0.05))
    fast = FastPath(first(mnist_train, 64), None, "cpu", 64).training(
        copy.deepcopy(model), Recipe(lr=0.05), precision)
    losses = [[training.step(batch)[0].item() for batch in batches] for training in (plain, fast)]
    assert losses[0][0] == pytest.approx(losses[1][0], rel={"fp32": 1e-5, "bf16": 0.03}[precision])
    assert losses[0] == pytest.approx(losses[1], rel={"fp32": 1e-4, "bf16": 0.05}[precision])
    assert losses[0][2] < losses[0][0]  # and they learn


@pytest.mark.quick
def test_the_same_seed_gives_the_same_fast_run(door):
    weights = []
    for _ in range(2):
        torch.manual_seed(7)
        training = door.training(Net(), Recipe())
        one_epoch(training, "cpu")
        weights.append(training.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def graphed_run(data, batch_size, seed=0):
    torch.manual_seed(seed)
    training = FastPath(data, None, "cuda", batch_size).training(Net(), Recipe(step_size=1, gamma=0.0))
    assert training.cuda_graph, "Net with SGD and StepLR replays CUDA graphs"
    assert training.step is training.batches, "the graphed steps are the batches"
    return training


@needs_cuda
def test_a_cuda_graph_replay_draws_fresh_augmentation_and_follows_the_learning_rate(mnist_train):
    run = graphed_run(first(mnist_train, 2048 + 100), 256)  # StepLR: lr 0 after an epoch
    one_epoch(run, "cuda")  # warm-up, capture, replays
    steps, model = run.batches, run.model
    assert steps.graph is not None
    indices = next(iter(steps))
    run.step(indices)
    augmented, weights = steps.data.clone(), model.conv1.weight.detach().clone()
    run.step(indices)
    assert not torch.equal(augmented, steps.data)  # the same images, new angles and crops
    assert not torch.equal(weights, model.conv1.weight)  # and the replay took a step
    run.scheduler.step()  # learning rate 0: StepLR fills the tensor the graph reads
    weights = model.conv1.weight.detach().clone()
    run.step(indices)
    assert torch.equal(weights, model.conv1.weight)


@needs_cuda
def test_augmentation_draws_inside_a_cuda_graph_cover_the_recipe_at_every_replay():
    torch.manual_seed(0)
    draw_augmentation(200_000, "cuda")  # warm-up
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        angles, crop = draw_augmentation(200_000, "cuda")
    replays = []
    for _ in range(2):
        graph.replay()
        replays.append((angles.clone().cpu(), crop.clone().cpu()))
        counts = torch.histc(replays[-1][0], bins=30, min=-15.0, max=15.0)
        assert replays[-1][0].abs().max() <= 15.0, "an angle beyond 15 degrees"
        assert counts.min() > 0.9 * counts.mean(), "every degree of the range is used, evenly"
        assert abs(replays[-1][1].float().mean().item() - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5
    assert not torch.equal(replays[0][0], replays[1][0])


@needs_cuda
def test_a_cuda_graph_replay_is_the_recipes_sgd_step_on_the_batch_it_augmented(mnist_train):
    run = graphed_run(first(mnist_train, 2048 + 96), 512)
    model, amp_dtype, optimizer, steps = run.model, run.amp_dtype, run.optimizer, run.batches
    assert len(steps) == 5  # the last batch, of 96, runs eagerly
    one_epoch(run, "cuda")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    run.step(next(iter(steps)))
    reference = prepare_fast(Net().to("cuda"), "cuda")
    reference.load_state_dict(before)
    plain = optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    for p, buffer in zip(reference.parameters(), momentum):
        plain.state[p]["momentum_buffer"] = buffer
    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = nn.CrossEntropyLoss()(reference(steps.data), steps.outputs[2])
    loss.backward()
    plain.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert not torch.equal(p, before[name])
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-6, msg=name)


@needs_cuda
def test_a_non_finite_loss_in_a_cuda_graph_names_the_batch(mnist_train):
    run = graphed_run(first(mnist_train, 8192), 256)
    run.optimizer.param_groups[0]["lr"].fill_(1e6)  # diverges within a few steps
    with pytest.raises(FloatingPointError, match=r"at epoch 3, batch \d+"):
        one_epoch(run, "cuda", epoch=3)
