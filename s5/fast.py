"""The fast path: the same recipe as the original, with the data on the training device, the augmentation done
there on whole batches, and the precision each device computes fastest; on CUDA, each step of a network the graph
is known to replay faithfully is one CUDA graph replay. FastPath is the one door; the rest are its parts."""
import ctypes
import functools
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from s5 import networks
from s5.data import ROTATION, normalize
from s5.training import PRECISIONS, EpochScheduler, Recipe, Step, Training, autocast

PRECISION_VARIABLE = "S5_PRECISION"


def cpu_bf16_instructions():
    """The bfloat16 instructions this CPU reports: 'AMX', 'AVX-512 BF16', or None (oneDNN then emulates bf16)."""
    for name, instructions in (("_is_amx_tile_supported", "AMX"), ("_is_avx512_bf16_supported", "AVX-512 BF16")):
        probe = getattr(torch.cpu, name, None)
        if probe is not None and probe():
            return instructions
    return None


def bf16_time_ratio(batch=64, channels=16, rounds=5):
    """bf16's time over float32's for a 3x3 convolution's forward and backward on the CPU, of the size the small
    networks train (`batch` digits of 28x28, `channels` to twice as many), the two precisions taking turns;
    the median of `rounds`. Below 1, bf16 is the faster. The random numbers it draws come from a generator of its
    own, so a run seeded before the probe draws the same numbers as one where nothing was probed."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(2 * channels, channels, 3, 3, generator=generator).mul_(0.1).requires_grad_()
    x = torch.randn(batch, channels, 28, 28, generator=generator).requires_grad_()

    def seconds(dtype):
        start = time.perf_counter()
        with autocast("cpu", dtype):
            output = F.conv2d(x, weight, padding=1)
        output.float().sum().backward()
        return time.perf_counter() - start

    for dtype in (torch.bfloat16, None):  # the first calls choose and cache oneDNN's kernels
        seconds(dtype)
    return statistics.median(seconds(torch.bfloat16) / seconds(None) for _ in range(rounds))


def choose_cpu_precision(instructions, measure=bf16_time_ratio):
    """(amp_dtype, why) for a CPU that reports `instructions` (cpu_bf16_instructions); None means float32.

    AMX computes bf16 several times faster than float32, and without any bf16 instructions oneDNN emulates it
    far slower. AVX-512 BF16 alone cannot tell: on an AMD Zen 4 it is native and fast, on some Intel Xeons bf16
    ran at half of float32's speed (docs/fast-path.md); there `measure()` decides, once a process."""
    if instructions == "AMX":
        return torch.bfloat16, "bf16: this CPU has AMX"
    if instructions is None:
        return None, "fp32: this CPU has no bf16 instructions"
    ratio = measure()
    if ratio < 1:
        return torch.bfloat16, f"bf16: on this CPU's AVX-512 BF16 a convolution took {ratio:.2f}x fp32's time"
    return None, f"fp32: on this CPU's AVX-512 BF16 a bf16 convolution took {ratio:.2f}x fp32's time"


@functools.cache
def cpu_precision():
    """choose_cpu_precision for this CPU, measured at most once a process so that a process's runs agree."""
    return choose_cpu_precision(cpu_bf16_instructions())


def choose_amp_dtype(device_type, cuda_capability):
    """(amp_dtype, why) on a device of `device_type`; None means float32.

    CUDA from compute capability 8.0 (A100, H100, RTX 30/40) computes bf16 in its tensor cores; older
    cards (T4, V100, GTX/RTX 20) have fp16 tensor cores but emulate bf16, so they get fp16 with a
    gradient scaler. A CPU gets what cpu_precision chooses. MPS stays float32."""
    if device_type == "cuda":
        if tuple(cuda_capability) >= (8, 0):
            return torch.bfloat16, "bf16: CUDA compute capability 8.0 or later"
        return torch.float16, "fp16: CUDA before compute capability 8.0"
    if device_type == "cpu":
        return cpu_precision()
    return None, f"fp32: {device_type}"


def precision_choice(device, precision=None):
    """(amp_dtype, why): the fast path's autocast dtype on `device` (None: float32) and the reason for it.

    precision: 'bf16', 'fp16', 'fp32' or 'auto' (the default, chosen by choose_amp_dtype); when not
    given, the environment variable S5_PRECISION is read."""
    precision = precision or os.environ.get(PRECISION_VARIABLE) or "auto"
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r} (from the argument or {PRECISION_VARIABLE}): "
                             f"use one of {', '.join(PRECISIONS)} or auto")
        return PRECISIONS[precision], f"{precision}: asked for"
    device = torch.device(device)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_amp_dtype(device.type, capability)


def grad_scaler(device, amp_dtype):
    """float16 gradients underflow without loss scaling; for any other dtype the scaler is a no-op."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=amp_dtype == torch.float16)


def keep_freed_memory():
    """Stops glibc from handing large freed blocks back to the kernel (Linux only; elsewhere a no-op).

    A training step on the CPU allocates activations of tens of MB and frees them again; by default
    glibc maps each one fresh from the kernel, and on 2 cores the page faults that follow take a
    large share of the step. Keeping freed memory in the heap removes them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30))
    except (OSError, AttributeError):  # not glibc
        return False


def prepare_fast(model, device):
    """The fast path's model settings: its memory layout, and on the CPU keep_freed_memory. Returns the model.

    cuDNN's autotuner stays off: it added tuning time and made no epoch faster."""
    device = torch.device(device)
    if device.type == "cpu":
        keep_freed_memory()  # Net's step takes 24-36% longer without it on an AMD Zen 3 (docs/fast-path.md)
    # channels_last speeds up convolutions (Net's step by 9-24% on a Zen 3), but on the CPU batch norm's backward is
    # several times slower in it, which more than undoes that for batch norm's networks (docs/fast-path.md)
    if device.type != "cpu" or not networks.uses(model)["batch norm"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def draw_augmentation(n, device="cpu", rotation=ROTATION):
    """Per image: a rotation angle uniform in [-rotation, rotation] degrees (the original's 15) and a crop decision
    with probability 0.1.

    Drawn on `device` from its generator, which torch.manual_seed seeds, so a run repeats exactly."""
    crop = torch.rand(n, device=device) < 0.1
    angles = torch.empty(n, device=device).uniform_(-rotation, rotation)
    return angles, crop


def augment(images, angles=None, crop=None):
    """The original's train augmentation, batched: images are (N, 1, 28, 28) floats in [0, 1].

    crop: bool per image, centre crop to 22x22 resized back to 28x28, bilinear. angles: degrees per
    image, counter-clockwise rotation, nearest neighbour, zero fill; the same maths as torchvision's
    rotate on tensors. Both default to a fresh draw_augmentation on the images' device."""
    if angles is None or crop is None:
        angles, crop = draw_augmentation(images.shape[0], images.device)
    crop = torch.as_tensor(crop, device=images.device).view(-1, 1, 1, 1)
    # CenterCrop(22) of 28 starts at round(3.0) = 3; upsampling, so antialiasing changes nothing. Every
    # image is zoomed and the crop decision picks per image: no data-dependent indexing, which would
    # make a GPU wait for the host.
    zoomed = F.interpolate(images[:, :, 3:25, 3:25], size=(28, 28), mode="bilinear", align_corners=False)
    images = torch.where(crop, zoomed, images)
    rad = torch.deg2rad(torch.as_tensor(angles, dtype=torch.float32, device=images.device))
    cos, sin, zero = torch.cos(rad), torch.sin(rad), torch.zeros_like(rad)
    # maps output to input coordinates (y pointing down), as torchvision's inverse affine matrix does
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _images_and_targets(dataset):
    if isinstance(dataset, torch.utils.data.Subset):
        indices = torch.as_tensor(list(dataset.indices))
        return dataset.dataset.data[indices], dataset.dataset.targets[indices]
    return dataset.data, dataset.targets


class DeviceLoader:
    """Yields normalized (data, target) batches like a DataLoader, from uint8 images held on `device`.

    train=True shuffles every epoch and applies `augment`, rotating up to `rotation` degrees each way; otherwise
    the order is fixed and the images are only normalized. (With one channel an image is the same bytes in
    channels_last and in the plain layout, so the batches need no conversion for prepare_fast's channels_last
    model.)"""

    def __init__(self, dataset, batch_size, device, train=False, rotation=ROTATION):
        images, targets = _images_and_targets(dataset)
        self.images = images.to(device).unsqueeze(1)  # uint8: 47 MB for the train set
        self.targets = targets.to(device)
        self.batch_size = batch_size
        self.train = train
        self.rotation = rotation

    def __len__(self):
        return math.ceil(len(self.targets) / self.batch_size)

    def index_batches(self):
        """The batches of one epoch as indices into the held images: a fresh shuffle when training."""
        n = len(self.targets)
        order = torch.randperm(n, device=self.images.device) if self.train else None
        for start in range(0, n, self.batch_size):
            yield order[start:start + self.batch_size] if self.train else slice(start, start + self.batch_size)

    def batch(self, indices):
        """(data, target) of the images at `indices`, augmented when training, normalized."""
        data = self.images[indices].float().div_(255)
        if self.train:
            data = augment(data, *draw_augmentation(len(data), data.device, self.rotation))
        return normalize(data), self.targets[indices]

    def __iter__(self):
        return map(self.batch, self.index_batches())


def uses_cuda_graph(device, amp_dtype, model, recipe):
    """Whether the fast path replays each training step as one CUDA graph: on CUDA, for what a graph has been
    shown there to replay faithfully: SGD with StepLR, not fp16 (whose gradient scaler decides on the host
    whether to take each step), and a network without dropout or batch norm (fresh masks and running statistics
    at every replay are not shown). Everything else trains in eager steps."""
    return (torch.device(device).type == "cuda" and amp_dtype != torch.float16 and recipe.optimizer == "sgd"
            and recipe.scheduler == "step" and not any(networks.uses(model)[kind] for kind in ("dropout", "batch norm")))


class CudaGraphSteps:  # pragma: no mutate block (CUDA only: its tests skip on a CPU)
    """The training steps of an epoch on CUDA, each one replay of a captured CUDA graph of `step` (a Step).

    Run eagerly, a step launches about a hundred small kernels from Python, and the GPU waits for the launches;
    a replay launches them at once (on an H200, 1.81 ms a step against 4.5 ms eagerly, docs/fast-path.md). The
    graph holds the whole step: gathering the batch from the device-resident images at the indices copied into
    `self.indices`, `augment` (the generator's offset advances at every replay, so every replay draws fresh angles
    and crops), and the Step, built without autocast's weight cache and with an optimizer whose learning rate is a
    device tensor (Recipe.make_optimizer(..., lr_tensor=True)).

    Iterate it for the epoch's index batches and call it on each, as utils.train does with a step. The first
    `warmup` steps run eagerly on real batches (CUDA graphs need the lazy set-up, momentum buffers included,
    done before capture), and so does the epoch's last, smaller batch."""

    def __init__(self, loader, step, warmup=2):
        if loader.images.device.type != "cuda" or not isinstance(step.optimizer.param_groups[0]["lr"], torch.Tensor):
            raise ValueError("CudaGraphSteps needs a DeviceLoader on a CUDA device and an optimizer whose learning "
                             "rate is a device tensor (Recipe.make_optimizer(..., lr_tensor=True))")
        self.loader, self.step, self.warmup = loader, step, warmup
        self.indices = torch.zeros(loader.batch_size, dtype=torch.int64, device=loader.images.device)
        self.graph, self.outputs, self.data = None, None, None

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.loader.index_batches()

    def _run(self, indices):
        batch = self.loader.batch(indices)
        return batch[0], self.step(batch)

    def __call__(self, indices):
        if len(indices) != len(self.indices):
            return self._run(indices)[1]
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            side = torch.cuda.Stream()  # warm-up away from the stream to capture on, as PyTorch asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self._run(indices)[1]
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        self.indices.copy_(indices)
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            self.step.optimizer.zero_grad(set_to_none=True)  # the captured backward writes fresh gradients
            with torch.cuda.graph(self.graph):
                self.data, self.outputs = self._run(self.indices)
        self.graph.replay()
        return self.outputs


class FastPath:
    """The fast path's one door, in the two steps a notebook takes them: the data sets onto the device first (so
    that the sample cell can draw from the loader before the model is made, as the original draws), then a network
    and a recipe on them.

        path = FastPath(train_data, test_data, device, batch_size)       # the loaders, on the device
        training = path.training(Net(), Recipe())                         # a training.Training

    train_data, test_data: torchvision MNIST sets or Subsets of them; test_data may be None (no test_loader)."""

    def __init__(self, train_data, test_data, device, batch_size):
        self.device = torch.device(device)
        self.train_loader = DeviceLoader(train_data, batch_size, device, train=True)
        self.test_loader = DeviceLoader(test_data, batch_size, device) if test_data is not None else None

    def training(self, model, recipe=Recipe(), precision=None):
        """`recipe`'s optimizer, scheduler and loss for `model` on the device, in its layout and precision
        (prepare_fast), each step a CUDA graph replay where uses_cuda_graph says so. precision: 'bf16', 'fp16',
        'fp32' or 'auto'; None reads S5_PRECISION (precision_choice). The train loader augments with the recipe's
        rotation from here on."""
        self.train_loader.rotation = recipe.rotation
        model = prepare_fast(model.to(self.device), self.device)
        amp_dtype, precision_reason = precision_choice(self.device, precision)
        graphed = uses_cuda_graph(self.device, amp_dtype, model, recipe)
        optimizer = recipe.make_optimizer(model.parameters(), lr_tensor=graphed)
        scheduler = recipe.make_scheduler(optimizer, len(self.train_loader))
        criterion = recipe.make_criterion()
        step = Step(model, self.device, optimizer, criterion, amp_dtype, grad_scaler(self.device, amp_dtype),
                    scheduler if recipe.per_batch else None, cache_enabled=not graphed)
        batches = CudaGraphSteps(self.train_loader, step) if graphed else self.train_loader
        return Training(model, self.device, optimizer, EpochScheduler(scheduler, recipe.per_batch), criterion,
                        batches if graphed else step, batches, self.test_loader, amp_dtype, graphed, precision_reason)
