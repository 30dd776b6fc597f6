import os
import platform

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from data import MNIST_MEAN, MNIST_STD
from fast import (DeviceLoader, PRECISIONS, augment, choose_amp_dtype, cpu_has_native_bf16, draw_augmentation,
                  fast_amp_dtype, FastPath, grad_scaler, keep_freed_memory, prepare_fast, sgd, uses_cuda_graph)
from model import Net
from utils import test as evaluate  # pytest would collect a function named test
from utils import train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


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
    assert angles.abs().max() <= 15.25 and angles.min() <= -14 and angles.max() >= 14
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
    assert per_batch.min() > 0 and per_batch.max() < 512  # chosen per image, never for a whole batch


def test_the_batched_augmentation_matches_the_seed_pipelines_pil_transforms_in_distribution(mnist_train):
    from data import train_transforms
    digit = mnist_train.data[7]
    pil = Image.fromarray(digit.numpy())
    torch.manual_seed(0)
    augmented = torch.stack([train_transforms(pil) for _ in range(2000)]) * MNIST_STD + MNIST_MEAN
    crop, angles = read_augmentation(augmented, digit.float() / 255)
    assert_the_recipe(crop, angles)


def test_augmentation_draws_cover_the_recipe():
    torch.manual_seed(0)
    angles, crop = draw_augmentation(200_000)
    assert angles.min() >= -15.0 and angles.max() <= 15.0
    counts = torch.histc(angles, bins=30, min=-15.0, max=15.0)
    assert counts.min() > 0.9 * counts.mean()  # every degree of the range is used, evenly
    share = crop.float().mean().item()
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5  # four standard errors


def test_augment_without_arguments_uses_one_fresh_draw(mnist_test):
    images = mnist_test.data[:32].unsqueeze(1).float() / 255
    torch.manual_seed(5)
    drawn = augment(images)
    torch.manual_seed(5)
    assert torch.equal(drawn, augment(images, *draw_augmentation(32)))
    assert not torch.equal(drawn, images)


@pytest.mark.quick
def test_device_loader_batches(mnist_train):
    subset = torch.utils.data.Subset(mnist_train, range(1000))
    loader = DeviceLoader(subset, 256, "cpu", train=True)
    torch.manual_seed(0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(t) for _, t in batches] == [256, 256, 256, 232]
    data = batches[0][0]
    assert data.shape == (256, 1, 28, 28) and data.dtype == torch.float32
    assert data.is_contiguous(memory_format=torch.channels_last) and data.is_contiguous()  # one channel: both
    assert data.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD)  # normalized, zero fill stays black
    targets = torch.cat([t for _, t in batches])
    assert sorted(targets.tolist()) == sorted(mnist_train.targets[:1000].tolist())  # each sample once
    assert not torch.equal(targets, mnist_train.targets[:1000])  # shuffled
    torch.manual_seed(0)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


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


@pytest.mark.parametrize("device_type, capability, native_bf16, expected", [
    ("cuda", (9, 0), False, torch.bfloat16),  # H100
    ("cuda", (8, 0), False, torch.bfloat16),  # A100, the first with bf16 tensor cores
    ("cuda", (8, 9), False, torch.bfloat16),  # RTX 40
    ("cuda", (7, 5), False, torch.float16),   # T4, Colab's free GPU: bf16 only emulated
    ("cuda", (7, 0), False, torch.float16),   # V100
    ("cuda", (6, 1), False, torch.float16),   # GTX 10
    ("cpu", None, True, torch.bfloat16),      # AVX-512 BF16 or AMX
    ("cpu", None, False, None),               # AVX2, or AVX-512 without BF16: float32
    ("mps", None, False, None),
])
@pytest.mark.quick
def test_the_precision_follows_what_the_device_computes_natively(device_type, capability, native_bf16, expected):
    assert choose_amp_dtype(device_type, capability, native_bf16) is expected


@pytest.mark.quick
def test_the_precision_can_be_overridden(monkeypatch):
    monkeypatch.delenv("S5_PRECISION", raising=False)
    assert fast_amp_dtype("cpu") is choose_amp_dtype("cpu", None, cpu_has_native_bf16())
    for name, dtype in PRECISIONS.items():
        assert fast_amp_dtype("cpu", name) is dtype
        monkeypatch.setenv("S5_PRECISION", name)
        assert fast_amp_dtype("cpu") is dtype
    assert fast_amp_dtype("cpu", "bf16") is torch.bfloat16  # the argument wins over the variable
    monkeypatch.setenv("S5_PRECISION", "float8")
    with pytest.raises(ValueError, match="Unknown precision 'float8' .*S5_PRECISION.*bf16, fp16, fp32 or auto"):
        fast_amp_dtype("cpu")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory sets glibc's malloc options")
def test_glibc_takes_the_cpu_allocator_setting():
    assert keep_freed_memory() is True  # both options accepted: freed step memory stays in the heap


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU's flags from Linux's /proc/cpuinfo")
def test_native_bf16_is_what_the_cpu_says_it_has():
    """AVX-512 BF16 or AMX in the CPU's own flags; on an AVX2 CPU (Zen 3) both are absent and the answer is no."""
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_tile" in flags)


def test_the_fast_model_has_channels_last_weights():
    model, _ = prepare_fast(Net(), "cpu", "fp32")
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    assert not Net().conv2.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.quick
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_trains_on_this_cpu(mnist_test, precision):
    """Each branch of the training loop on two tiny batches, so that a CPU that only emulates bf16
    or fp16 still runs them in a second."""
    torch.manual_seed(0)
    model, amp_dtype = prepare_fast(Net(), "cpu", precision)
    scaler = grad_scaler("cpu", amp_dtype)
    assert scaler.is_enabled() == (precision == "fp16")  # only fp16 gradients need loss scaling
    batches = list(DeviceLoader(torch.utils.data.Subset(mnist_test, range(8)), 4, "cpu", train=True))
    before = model.conv1.weight.detach().clone()
    with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
        assert model.conv2(model.conv1(batches[0][0])).dtype == (amp_dtype or torch.float32)
        low = nn.CrossEntropyLoss()(model(batches[0][0]), batches[0][1]).item()
    exact = nn.CrossEntropyLoss()(model(batches[0][0]), batches[0][1]).item()
    # the same loss as float32, to within the dtype's precision (bf16 keeps 8 bits of mantissa, fp16 11)
    assert low == pytest.approx(exact, rel={"fp32": 0, "bf16": 0.03, "fp16": 0.005}[precision])
    accuracy, loss = train(model, "cpu", batches, optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                           nn.CrossEntropyLoss(), amp_dtype, 1, scaler)
    assert 0 < loss < 10 and 0 <= accuracy <= 100
    assert model.conv1.weight.dtype == torch.float32  # the weights stay float32 in every precision
    assert not torch.equal(model.conv1.weight, before)  # it took its steps


@needs_cuda
def test_train_on_cuda_in_its_precision(mnist_test):
    model, amp_dtype = prepare_fast(Net().to("cuda"), "cuda")
    capability = torch.cuda.get_device_capability()
    assert amp_dtype is (torch.bfloat16 if capability >= (8, 0) else torch.float16)
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(1024)), 256, "cuda", train=True)
    accuracy, loss = train(model, "cuda", loader, optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                           nn.CrossEntropyLoss(), amp_dtype, 1, grad_scaler("cuda", amp_dtype))
    assert 0 <= accuracy <= 100 and 0 < loss < 10


@needs_cuda
def test_a_non_finite_loss_on_cuda_names_the_batch(mnist_test):
    model, amp_dtype = prepare_fast(Net().to("cuda"), "cuda")
    batches = list(DeviceLoader(torch.utils.data.Subset(mnist_test, range(512)), 64, "cuda"))
    batches[5][0][0, 0, 5, 5] = float("nan")
    with pytest.raises(FloatingPointError, match="nan at epoch 4, batch 5"):
        train(model, "cuda", batches, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss(),
              amp_dtype, 4)


def test_cuda_graphs_only_where_the_step_needs_no_host_decision():
    assert uses_cuda_graph("cuda", torch.bfloat16) and uses_cuda_graph("cuda", None)
    assert not uses_cuda_graph("cuda", torch.float16)  # the gradient scaler skips steps from the host
    assert not uses_cuda_graph("cpu", None) and not uses_cuda_graph("mps", None)
    plain = sgd(Net().parameters(), lr=0.01, momentum=0.9)
    assert plain.param_groups[0]["lr"] == 0.01 and not plain.param_groups[0]["fused"]


def test_fast_sgd_is_the_recipes_sgd_and_its_graph_form_keeps_the_learning_rate_in_a_tensor():
    """What CudaGraphSteps needs from fast.sgd, checked on the CPU: the same steps as optim.SGD with momentum,
    and for a graph a fused SGD whose learning rate is a tensor that StepLR fills in place."""
    torch.manual_seed(0)
    models = [Net() for _ in range(3)]
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    optimizers = [optim.SGD(models[0].parameters(), lr=0.01, momentum=0.9),
                  sgd(models[1].parameters(), lr=0.01, momentum=0.9),
                  sgd(models[2].parameters(), lr=0.01, momentum=0.9, cuda_graph=True)]
    lr = optimizers[2].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and optimizers[2].param_groups[0]["fused"]
    schedulers = [optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5) for optimizer in optimizers]
    images, targets = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(3):
        for model, optimizer, scheduler in zip(models, optimizers, schedulers):
            optimizer.zero_grad()
            nn.functional.nll_loss(model(images), targets).backward()
            optimizer.step()
            scheduler.step()
    assert optimizers[2].param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01 / 8)
    for model in models[1:]:
        for p, q in zip(model.parameters(), models[0].parameters()):
            torch.testing.assert_close(p, q)


def one_epoch(run, device, epoch=1):
    """One epoch as the notebook runs it, from what the door gave."""
    return train(run.model, device, run.train_batches, run.optimizer, run.criterion, run.amp_dtype, epoch, run.scaler,
                 run.train_step)


@pytest.mark.quick
def test_the_door_gives_the_training_loop_everything_with_the_recipe_it_was_given(mnist_train, mnist_test):
    torch.manual_seed(0)
    path = FastPath(torch.utils.data.Subset(mnist_train, range(256)), torch.utils.data.Subset(mnist_test, range(100)),
                    "cpu", 64)
    run = path.training(Net(), lr=0.02, momentum=0.8, step_size=3, gamma=0.5, precision="fp32")
    assert run.train_loader is path.train_loader and run.test_loader is path.test_loader  # the sample cell's loader
    assert run.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert run.amp_dtype is None and run.precision == "fp32" and not run.scaler.is_enabled()
    assert run.train_step is None and run.train_batches is run.train_loader  # no CUDA graph on a CPU
    assert run.train_loader.train and len(run.train_loader) == 4 and run.train_loader.images.shape[0] == 256
    assert not run.test_loader.train and len(run.test_loader) == 2
    group = run.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"]) == (0.02, 0.8)
    assert group["params"] == list(run.model.parameters())
    assert (run.scheduler.step_size, run.scheduler.gamma) == (3, 0.5)
    assert isinstance(run.criterion, nn.CrossEntropyLoss)
    before = run.model.conv1.weight.detach().clone()
    accuracy, loss = one_epoch(run, "cpu")
    assert not torch.equal(before, run.model.conv1.weight) and 0 < accuracy <= 100 and loss > 0
    evaluate(run.model, "cpu", run.test_loader, run.criterion, amp_dtype=run.amp_dtype)
    for _ in range(3):
        run.scheduler.step()
    assert group["lr"] == pytest.approx(0.01)
    bf16 = FastPath(torch.utils.data.Subset(mnist_train, range(64)), None, "cpu", 64).training(
        Net(), lr=0.01, momentum=0.9, step_size=15, gamma=0.1, precision="bf16")
    assert bf16.amp_dtype == torch.bfloat16 and bf16.precision == "bf16" and bf16.test_loader is None


@pytest.mark.quick
def test_the_same_seed_gives_the_same_fast_run(mnist_train):
    weights = []
    for _ in range(2):
        torch.manual_seed(7)
        run = FastPath(torch.utils.data.Subset(mnist_train, range(256)), None, "cpu", 64).training(
            Net(), lr=0.01, momentum=0.9, step_size=15, gamma=0.1)
        one_epoch(run, "cpu")
        weights.append(run.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def graphed_run(data, batch_size, seed=0):
    torch.manual_seed(seed)
    run = FastPath(data, None, "cuda", batch_size).training(Net(), lr=0.01, momentum=0.9, step_size=1, gamma=0.0)
    assert run.train_step is not None and run.train_batches is not run.train_loader
    return run


@needs_cuda
def test_a_cuda_graph_replay_draws_fresh_augmentation_and_follows_the_learning_rate(mnist_train):
    run = graphed_run(torch.utils.data.Subset(mnist_train, range(2048 + 100)), 256)  # StepLR: lr 0 after an epoch
    one_epoch(run, "cuda")  # warm-up, capture, replays
    steps, model = run.train_batches, run.model
    assert steps.graph is not None
    indices = next(iter(steps))
    run.train_step(indices)
    first, weights = steps.data.clone(), model.conv1.weight.detach().clone()
    run.train_step(indices)
    assert not torch.equal(first, steps.data)  # the same images, new angles and crops
    assert not torch.equal(weights, model.conv1.weight)  # and the replay took a step
    run.scheduler.step()  # learning rate 0: StepLR fills the tensor the graph reads
    weights = model.conv1.weight.detach().clone()
    run.train_step(indices)
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
        assert replays[-1][0].abs().max() <= 15.0 and counts.min() > 0.9 * counts.mean()
        assert abs(replays[-1][1].float().mean().item() - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5
    assert not torch.equal(replays[0][0], replays[1][0])


@needs_cuda
def test_a_cuda_graph_replay_is_the_recipes_sgd_step_on_the_batch_it_augmented(mnist_train):
    run = graphed_run(torch.utils.data.Subset(mnist_train, range(2048 + 96)), 512)
    model, amp_dtype, optimizer, steps = run.model, run.amp_dtype, run.optimizer, run.train_batches
    assert len(steps) == 5  # the last batch, of 96, runs eagerly
    one_epoch(run, "cuda")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    run.train_step(next(iter(steps)))
    reference = prepare_fast(Net().to("cuda"), "cuda")[0]
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
    run = graphed_run(torch.utils.data.Subset(mnist_train, range(8192)), 256)
    run.optimizer.param_groups[0]["lr"].fill_(1e6)  # diverges within a few steps
    with pytest.raises(FloatingPointError, match=r"at epoch 3, batch \d+"):
        one_epoch(run, "cuda", epoch=3)
