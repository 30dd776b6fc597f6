"""Looking inside Net without changing it: how far each layer sees, what each layer outputs, and which pixels
drove an answer, with a measurement of whether that last picture is faithful.

    receptive_fields(model)        one dict per layer: its name, output size, receptive field and jump
    receptive_field_box(...)       the input pixels one unit of a layer reads
    activations(model, images)     each convolution's and pooling's output for a batch
    attribution(model, images, targets, method)   per-pixel attributions from Captum, (N, 28, 28)
    deletion_test(...)             the target's probability left after deleting the top pixels, against random ink

Every layer is found by watching a real forward pass (torch function calls and module hooks), so the same
code reads any network built from 2-d convolutions, poolings and linear layers."""
import time

import torch
import torch.nn.functional as F
from captum import attr
from torch.overrides import TorchFunctionMode

from data import MNIST_MEAN, MNIST_STD
from pictures import attribution_picture, digit_grid, feature_map_grid

BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a black MNIST pixel, as the network sees it after normalization
CONVOLUTIONS = {F.conv2d, torch.conv2d}
POOLINGS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}
LINEAR = {F.linear}


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class _LayerCalls(TorchFunctionMode):
    """Records the convolutions, poolings and linear layers of a forward pass, in order, with their
    geometry and output. A call made by a module (nn.Conv2d, nn.MaxPool2d) is named after the module; a
    functional pooling in the model's own forward is named pool1, pool2, ..."""

    def __init__(self, model):
        super().__init__()
        self.calls, self.inside, self.pools, self.hooks = [], [], 0, []

        def leave(module, inputs, output):  # returns None: a forward hook's result would replace the output
            self.inside.pop()

        for name, module in model.named_modules():
            if name and not list(module.children()):
                self.hooks.append(module.register_forward_pre_hook(lambda m, i, n=name: self.inside.append(n)))
                self.hooks.append(module.register_forward_hook(leave))

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if func in CONVOLUTIONS | POOLINGS | LINEAR:
            kind = "conv" if func in CONVOLUTIONS else "pool" if func in POOLINGS else "linear"
            if self.inside:
                name = self.inside[-1]
            else:
                self.pools += kind == "pool"
                name = f"{kind}{self.pools}" if kind == "pool" else func.__name__
            self.calls.append({"layer": name, "kind": kind, "geometry": self._geometry(func, args, kwargs),
                               "output": output})
        return output

    @staticmethod
    def _geometry(func, args, kwargs):
        """(kernel, stride, padding, dilation) per spatial axis, from the call's own arguments."""
        if func in CONVOLUTIONS:
            weight = args[1]
            stride, padding, dilation = (kwargs.get(k, args[i] if len(args) > i else d) for k, i, d in
                                         (("stride", 3, 1), ("padding", 4, 0), ("dilation", 5, 1)))
            if isinstance(padding, str):
                raise ValueError(f"receptive_fields cannot place padding={padding!r}; use numbers")
            return tuple(weight.shape[2:]), _pair(stride), _pair(padding), _pair(dilation)
        if func in POOLINGS:
            kernel = _pair(kwargs.get("kernel_size", args[1] if len(args) > 1 else None))
            stride = kwargs.get("stride", args[2] if len(args) > 2 else None)
            padding = kwargs.get("padding", args[3] if len(args) > 3 else 0)
            dilation = kwargs.get("dilation", args[4] if len(args) > 4 and func in (F.max_pool2d, torch.max_pool2d)
                                  else 1)
            return kernel, _pair(stride or kernel), _pair(padding), _pair(dilation)
        return None


def _trace(model, images):
    with _LayerCalls(model) as calls:
        model(images)
    return calls.calls


def receptive_fields(model, input_shape=(1, 28, 28)):
    """One dict per convolution, pooling and linear layer, in forward order:

    layer: its name (the module's, or pool1, pool2 for a functional pooling); output: its output size
    (height x width, or features); rf: how many input pixels one unit sees along each axis; jump: input
    pixels between neighbouring units; start: the input coordinate of the first unit's centre. A linear layer
    sees everything its input saw (rf the whole span, jump None). Square inputs and kernels are assumed for
    the printed numbers; the computation runs on the height axis."""
    weight = next(model.parameters())
    with torch.no_grad():
        calls = _trace(model.eval(), torch.zeros(1, *input_shape, device=weight.device, dtype=weight.dtype))
    rf, jump, start, size, rows = 1, 1, 0.0, input_shape[-2], []
    for call in calls:
        if call["kind"] == "linear":
            if jump is not None:  # the first linear layer reads every unit of the last feature map
                rf, jump, start = rf + (size - 1) * jump, None, None
            rows.append({"layer": call["layer"], "output": call["output"].shape[-1], "rf": rf, "jump": None,
                         "start": None})
            continue
        (kernel, _), (stride, _), (padding, _), (dilation, _) = call["geometry"]
        span = (kernel - 1) * dilation
        rf, start, jump = rf + span * jump, start + (span / 2 - padding) * jump, jump * stride
        size = call["output"].shape[-2]
        rows.append({"layer": call["layer"], "output": f"{size}x{call['output'].shape[-1]}", "rf": rf, "jump": jump,
                     "start": start})
    return rows


def receptive_field_table(model):
    """receptive_fields as a printable table."""
    lines = [f"{'layer':<8}{'output':>8}{'receptive field':>17}{'jump':>6}"]
    for row in receptive_fields(model):
        rf = f"{row['rf']}x{row['rf']}"
        lines.append(f"{row['layer']:<8}{row['output']:>8}{rf:>17}{row['jump'] if row['jump'] else '-':>6}")
    return "\n".join(lines)


def receptive_field_box(field, row, col, size=28):
    """(top, left, bottom, right), inclusive, of the input pixels that unit (row, col) of a layer reads;
    `field` is that layer's dict from receptive_fields. Clipped to the image: padding is not input."""
    half = (field["rf"] - 1) / 2

    def span(index):
        centre = field["start"] + index * field["jump"]
        return max(0, round(centre - half)), min(size - 1, round(centre + half))

    (top, bottom), (left, right) = span(row), span(col)
    return top, left, bottom, right


def activations(model, images):
    """{layer: output} of each convolution and pooling for a batch, in forward order, as the model computed
    them (before the ReLU that follows), under the caller's grad mode (torch.no_grad() when only looking)."""
    return {call["layer"]: call["output"] for call in _trace(model.eval(), images) if call["kind"] != "linear"}


def _probabilities(model, images):
    return model(images).float().exp()  # Net returns log-probabilities


# Each method: (model, normalized images, targets, the black background as a batch) -> per-pixel attributions.
METHODS = {
    "integrated_gradients": lambda model, images, targets, background: attr.IntegratedGradients(model).attribute(
        images, baselines=background, target=targets, n_steps=32, internal_batch_size=256),
    "occlusion": lambda model, images, targets, background: attr.Occlusion(model).attribute(
        images, sliding_window_shapes=(1, 3, 3), strides=(1, 1, 1), baselines=BACKGROUND, target=targets,
        perturbations_per_eval=64),
    "deeplift": lambda model, images, targets, background: attr.DeepLift(model).attribute(
        images, baselines=background, target=targets),
    "input_x_gradient": lambda model, images, targets, background: attr.InputXGradient(model).attribute(
        images, target=targets),
    "saliency": lambda model, images, targets, background: attr.Saliency(model).attribute(images, target=targets),
    "gradcam_conv4": lambda model, images, targets, background: attr.LayerAttribution.interpolate(
        attr.LayerGradCam(model, model.conv4).attribute(images, target=targets, relu_attributions=True),
        images.shape[-2:], interpolate_mode="bilinear"),
}
DEFAULT_METHOD = "integrated_gradients"


def attribution(model, images, targets, method=DEFAULT_METHOD):
    """How much each pixel raised the score of `targets` (any digit per image, not only the predicted one),
    as a float tensor (N, 28, 28) on the CPU: larger where a pixel did more. `images` are normalized
    (N, 1, 28, 28). Built on Captum; the baseline, where a method takes one, is the black background.

    method: integrated_gradients (the default: the most faithful by deletion_test, see docs/inside.md),
    occlusion (3x3 patches), deeplift, input_x_gradient, saliency, or gradcam_conv4 (Grad-CAM on conv4,
    upsampled)."""
    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    model = model.eval()
    images = images.detach().float().contiguous()
    targets = torch.as_tensor(targets, device=images.device).expand(len(images))
    maps = METHODS[method](model, images, targets, torch.full_like(images, BACKGROUND))
    return maps.detach().sum(dim=1).float().cpu()


def deletion_test(model, images, targets, maps, fraction=0.1, seed=0):
    """How faithful the attribution `maps` are: set the top `fraction` of pixels by attribution to the
    background and return (mean probability left for the target, the same after deleting as many pixels
    of ink chosen at random). A faithful map removes what the answer rests on, so less is left."""
    model = model.eval()
    flat = images.detach().flatten(1)
    count = round(fraction * flat.shape[1])
    top = maps.to(flat.device).flatten(1).topk(count, dim=1).indices
    generator = torch.Generator().manual_seed(seed)
    ink = (flat > BACKGROUND + 1e-6).float().cpu() + torch.rand(flat.shape, generator=generator)  # ink ranks first
    chosen = ink.topk(count, dim=1).indices.to(flat.device)
    targets = torch.as_tensor(targets, device=flat.device).expand(len(flat))

    def left_after_deleting(indices):
        deleted = flat.clone().scatter_(1, indices, BACKGROUND).view_as(images)
        with torch.no_grad():
            return _probabilities(model, deleted).gather(1, targets[:, None]).mean().item()

    return left_after_deleting(top), left_after_deleting(chosen)


def faithfulness_table(model, images, targets, methods=tuple(METHODS)):
    """[(method, probability left after deleting its top 10%, after deleting random ink, seconds per image)]."""
    rows = []
    for method in methods:
        start = time.perf_counter()
        maps = attribution(model, images, targets, method)
        seconds = (time.perf_counter() - start) / len(images)
        rows.append((method, *deletion_test(model, images, targets, maps), seconds))
    return rows


def plot_feature_maps(model, image, layers=("conv1", "conv2", "conv3", "conv4")):
    """The most active feature maps of each convolution for one normalized (1, 28, 28) image; the figure."""
    import matplotlib.pyplot as plt
    fields = {row["layer"]: row for row in receptive_fields(model)}
    with torch.no_grad():
        maps = activations(model, image.unsqueeze(0).to(next(model.parameters()).device))
    fig, axes = plt.subplots(len(layers), 1, figsize=(12, 1.9 * len(layers)))
    for ax, layer in zip(axes, layers):
        ax.imshow(feature_map_grid(maps[layer][0])[0])
        ax.set_title(f"{layer}: {fields[layer]['output']} maps, the 8 most active of {maps[layer].shape[1]}; "
                     f"each unit sees {fields[layer]['rf']}x{fields[layer]['rf']} input pixels", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_attributions(model, incorrect_pred, count=20, cols=5):
    """Over each misclassified digit of the gallery (utils.plot_incorrect): which pixels raised the score of
    the wrong answer (red) or lowered it (blue); the figure."""
    import matplotlib.pyplot as plt
    count = min(count, len(incorrect_pred["images"]))
    if count == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.set_title("no misclassified digits")
        return fig
    device = next(model.parameters()).device
    images = torch.stack(incorrect_pred["images"][:count]).to(device)
    maps = attribution(model, images, incorrect_pred["predicted_vals"][:count])
    fig, axes = digit_grid(count, cols)
    for i, ax in enumerate(axes):
        ax.imshow(attribution_picture(images[i:i + 1], maps[i]))
        ax.set_title(f"{incorrect_pred['ground_truths'][i]} -> {incorrect_pred['predicted_vals'][i]}")
    fig.suptitle("What raised the wrong answer (red) and what spoke against it (blue): label -> prediction")
    fig.tight_layout()
    return fig


def main():
    """The faithfulness table of docs/inside.md: the shipped weights, MNIST test digits 0-199, their true labels."""
    from data import load_mnist, test_transforms
    from predict import load_model

    model = load_model()
    test_set = load_mnist(train=False, transform=test_transforms)
    digits = torch.stack([test_set[i][0] for i in range(200)])
    labels = test_set.targets[:200]
    with torch.no_grad():
        before = _probabilities(model, digits).gather(1, labels[:, None]).mean()
    print(f"probability of the true digit before any deletion: {before:.2f}")
    print("| method | probability left, top 10% deleted | random 10% of the ink deleted | time per image |")
    print("| --- | --- | --- | --- |")
    for method, left, random_left, seconds in faithfulness_table(model, digits, labels):
        print(f"| {method} | {left:.2f} | {random_left:.2f} | {1000 * seconds:.1f} ms |")


if __name__ == "__main__":
    main()
