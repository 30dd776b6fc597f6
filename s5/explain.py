"""Looking inside any digit classifier without changing it: how far each layer sees, what each layer outputs, and
which pixels drove an answer, with a measurement of whether that last picture is faithful (explain.py at the top
of the project is its command).

Every layer is found by watching a real forward pass (networks.trace), so the figures follow the network as it
runs: residual adds, concatenations, global pooling and functional calls included."""
import time

import torch
from captum import attr

from s5 import networks
from s5.data import normalize
from s5.networks import tensors_in
from s5.pictures import attribution_picture, digit_grid, feature_map_grid

BACKGROUND = normalize(0.0)  # a black MNIST pixel, as the network sees it


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _argument(call, name, position, default):
    args, kwargs = call["args"], call["kwargs"]
    return kwargs[name] if name in kwargs else args[position] if len(args) > position else default


def _geometry(call, size):
    """(kernel, stride, padding, dilation), each per axis (height, width), of a convolution or pooling call;
    `size` is its input's (height, width)."""
    func = call["func"]
    if func in networks.CONVOLUTIONS:
        kernel = tuple(call["args"][1].shape[2:])
        stride, padding, dilation = (_pair(_argument(call, name, i, d)) if not isinstance(_argument(call, name, i, d), str)
                                     else _argument(call, name, i, d)
                                     for name, i, d in (("stride", 3, 1), ("padding", 4, 0), ("dilation", 5, 1)))
        if isinstance(padding, str):  # 'valid': none; 'same': PyTorch puts the smaller half first
            padding = tuple(0 if padding == "valid" else d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        return kernel, stride, padding, dilation
    if func in networks.ADAPTIVE_POOLINGS:
        out = _pair(_argument(call, "output_size", 1, None))
        out = tuple(n if o is None else o for o, n in zip(out, size))
        if any(n % o for n, o in zip(size, out)):
            return None  # windows of unequal sizes: no single field describes its units
        stride = tuple(n // o for n, o in zip(size, out))
        return tuple(n - (o - 1) * s for n, o, s in zip(size, out, stride)), stride, (0, 0), (1, 1)
    if func in networks.REDUCTIONS:
        return size, size, (0, 0), (1, 1)  # over every position: one window of the whole map
    kernel = _pair(_argument(call, "kernel_size", 1, None))
    stride = _argument(call, "stride", 2, None)
    dilation = _argument(call, "dilation", 4, 1) if func in (networks.F.max_pool2d, torch.max_pool2d) else 1
    return kernel, _pair(stride or kernel), _pair(_argument(call, "padding", 3, 0)), _pair(dilation)


def _through(field, geometry):
    """A unit's field after a convolution or pooling: rf grows by (k - 1) * dilation input units, each `jump`
    pixels apart; the first unit's centre moves by half that span less the padding; the jump multiplies by the
    stride."""
    rf, jump, start = field
    spans = [(k - 1) * d for k, d in zip(geometry[0], geometry[3])]
    return (tuple(r + s * j for r, s, j in zip(rf, spans, jump)),
            tuple(j * s for j, s in zip(jump, geometry[1])),
            tuple(c + (s / 2 - p) * j for c, s, p, j in zip(start, spans, geometry[2], jump)))


def _everything(field, size):
    """What a unit that reads every position of a map sees (a linear layer after flatten, a global pooling)."""
    rf, jump, start = field
    if jump is None:
        return field
    rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, size, jump))
    return rf, None, tuple(c + (n - 1) * j / 2 for c, n, j in zip(start, size, jump))


def _union(fields):
    """The field of a unit that reads the same position of several maps (a residual add, a concatenation), or of
    one map through an operation that keeps its positions: the smallest box holding each input's box. None when
    the inputs' units are not spaced alike, so that no single field describes the result."""
    if any(field is None for field in fields) or len({field[1] for field in fields}) > 1:
        return None
    low = [min(field[2][a] - (field[0][a] - 1) / 2 for field in fields) for a in range(2)]
    high = [max(field[2][a] + (field[0][a] - 1) / 2 for field in fields) for a in range(2)]
    return (tuple(round(h - lo + 1) for lo, h in zip(low, high)), fields[0][1],
            tuple((lo + h) / 2 for lo, h in zip(low, high)))


def _kind(call, inputs):
    func = call["func"]
    if func in networks.CONVOLUTIONS:
        return "conv"
    if func in networks.POOLINGS | networks.ADAPTIVE_POOLINGS or networks.is_global_pool(call):
        return "pool"
    if func in networks.LINEAR:
        return "linear"
    if func in networks.MERGES and len(inputs) >= 2:
        return networks.MERGES[func]
    return None


def _windows(call, size, out_size):
    """Per axis, for each unit of the call's output, the input positions it reads (padding left out)."""
    geometry = _geometry(call, size)
    if geometry is None:  # adaptive pooling to a size that does not divide: windows of unequal sizes
        return [[range(i * n // o, -(-(i + 1) * n // o)) for i in range(o)] for n, o in zip(size, out_size)]
    return [[[m for m in range(s * i - p, s * i - p + d * (k - 1) + 1, d) if 0 <= m < n] for i in range(o)]
            for k, s, p, d, n, o in zip(*geometry, size, out_size)]


def _spans_through(spans, windows):
    """The exact pixel interval (first, last) of each output unit along each axis, from its inputs' intervals."""
    return tuple([(min(axis[m][0] for m in window), max(axis[m][1] for m in window)) for window in axis_windows]
                 for axis, axis_windows in zip(spans, windows))


def _spans_union(all_spans, everything=False):
    """Unit by unit, the interval holding each input's (everything: one unit holding all of them)."""
    if any(spans is None for spans in all_spans):
        return None
    if everything:
        return tuple([(min(lo for spans in all_spans for lo, _ in spans[a]),
                       max(hi for spans in all_spans for _, hi in spans[a]))] for a in range(2))
    return tuple([(min(spans[a][i][0] for spans in all_spans), max(spans[a][i][1] for spans in all_spans))
                  for i in range(len(all_spans[0][a]))] for a in range(2))


def _walk(model, calls, images):
    """The layers of a traced forward pass: [{layer, kind, output, read, field, spans, params}] for each
    convolution, pooling, merge of two or more maps, and linear layer, in order. read is the output as the next
    layer reads it, after the operations that keep its shape and follow it alone (batch norm, ReLU, dropout).

    field is the textbook figure, (rf, jump, start), each per axis (height, width), in input pixels; jump and
    start are None once a unit sees every position, and the field is None where no single field describes the
    units. spans is what each unit really reads, per axis: the (first, last) input pixel of each unit's row or
    column, padding left out; a linear layer or a global pooling has one unit per axis."""
    size = tuple(images.shape[-2:])
    fields = {id(images): ((1, 1), (1, 1), (0.0, 0.0))}
    spans = {id(images): tuple([(i, i) for i in range(n)] for n in size)}
    modules = dict(model.named_modules())
    counts, rows, follows = {}, [], {}  # follows: a tensor -> the row whose output it still is, after BN, ReLU...
    for call in calls:
        inputs = [t for t in tensors_in(call["args"]) + tensors_in(call["kwargs"]) if id(t) in fields]
        if not inputs:
            continue
        outputs = tensors_in(call["output"])
        kind = _kind(call, inputs)
        first, out = inputs[0], outputs[0]
        source, source_spans = fields[id(first)], spans[id(first)]
        spatial = first.dim() == 4 and source is not None and source[1] is not None
        if kind in ("conv", "pool") and spatial:
            geometry = _geometry(call, tuple(first.shape[-2:]))
            field = None if geometry is None else _through(source, geometry)
            out_size = tuple(out.shape[-2:]) if out.dim() == 4 else (1, 1)
            out_spans = None if source_spans is None else _spans_through(
                source_spans, _windows(call, tuple(first.shape[-2:]), out_size))
            if field is not None and out_size == (1, 1):
                field = _everything(field, (1, 1))  # one unit per map: it sees all there is
        elif kind in ("conv", "pool", "linear"):
            field, out_spans = source, _spans_union([source_spans], everything=True)
        elif out.dim() == 4 and all(t.dim() == 4 and t.shape[-2:] == out.shape[-2:] for t in inputs):
            field, out_spans = _union([fields[id(t)] for t in inputs]), _spans_union([spans[id(t)] for t in inputs])
        elif out.dim() < 4:  # flattened, or reduced: each value reads every position it came from
            field = _union([None if fields[id(t)] is None else
                            _everything(fields[id(t)], tuple(t.shape[-2:]) if t.dim() == 4 else (1, 1))
                            for t in inputs])
            out_spans = _spans_union([spans[id(t)] for t in inputs], everything=True)
        else:
            field = out_spans = None
        for output in outputs:
            fields[id(output)], spans[id(output)] = field, out_spans
        if not kind and len(inputs) == 1 and id(first) in follows and out.shape == first.shape:
            rows[follows[id(first)]]["read"] = out
            follows[id(out)] = follows[id(first)]
        if kind:
            if call["leaf"]:
                name = call["module"]
            else:
                prefix = f"{call['module']}." if call["module"] else ""
                counts[prefix, kind] = counts.get((prefix, kind), 0) + 1
                name = f"{prefix}{kind}{counts[prefix, kind]}"
            params = sum(p.numel() for p in modules[name].parameters()) if call["leaf"] else 0
            rows.append({"layer": name, "kind": kind, "output": out, "read": out, "field": field, "spans": out_spans,
                         "params": params})
            follows[id(out)] = len(rows) - 1
    return rows


def receptive_fields(model, input_shape=networks.INPUT_SHAPE):
    """One dict per convolution, pooling, merge and linear layer, in forward order:

    layer: its name (the module's; a functional call is named after its kind and number, prefixed by the module
    that calls it: pool1, block1.add1); kind: conv, pool, add, cat, mul or linear; shape: its output's shape without
    the batch; params: the parameters of its module; rf: how many input pixels one unit sees along each axis
    (height, width), by the textbook rule, so it can exceed the image; jump: input pixels between neighbouring units;
    start: the input coordinate of the first unit's centre. jump and start are None once a unit sees every
    position (a linear layer, a global pooling), and all three are None where no single field describes the units.
    spans: the pixels each unit really reads, padding left out (receptive_field_box reads them)."""
    weight = next(model.parameters(), torch.zeros(()))
    was_training = model.training
    images = torch.zeros(1, *input_shape, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        rows = _walk(model, networks.trace(model.eval(), images), images)
    model.train(was_training)
    return [{"layer": row["layer"], "kind": row["kind"], "shape": tuple(row["output"].shape[1:]),
             "params": row["params"], "rf": row["field"] and row["field"][0], "jump": row["field"] and row["field"][1],
             "start": row["field"] and row["field"][2], "spans": row["spans"]} for row in rows]


def size_text(pair):
    """A (height, width) pair as the tables write it, '18x18'; '?' where it is not known."""
    return "?" if pair is None else f"{pair[0]}x{pair[1]}"


def field_text(rf):
    """A receptive field as the tables and the Inside view write it, clipped to the image: '18x18', or 'all 28x28'
    where the textbook figure reaches past the image's edges on both sides, as it does for global pooling over
    padded maps (a unit reads no pixels beyond the image)."""
    if rf is None:
        return "?"
    image = tuple(networks.INPUT_SHAPE[1:])
    clipped = tuple(min(side, limit) for side, limit in zip(rf, image))
    if clipped == image and clipped != tuple(rf):
        return f"all {size_text(image)}"
    return size_text(clipped)


def receptive_field_table(model):
    """receptive_fields as a printable table, one row per layer, like torchsummary's; a field that reaches past
    the image is clipped to it (field_text), with its textbook figure said below the table."""
    rows = receptive_fields(model)
    width = max([len(row["layer"]) for row in rows] + [5]) + 2
    lines = [f"{'layer':<{width}}{'kind':<8}{'output':>14}{'receptive field':>17}{'jump':>7}{'params':>10}"]
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        jump = "-" if row["rf"] is not None and row["jump"] is None else size_text(row["jump"])
        lines.append(f"{row['layer']:<{width}}{row['kind']:<8}{shape:>14}{field_text(row['rf']):>17}{jump:>7}"
                     f"{row['params']:>10,}")
    lines.append(f"total parameters: {networks.parameter_count(model):,}")
    beyond = [row for row in rows if row["rf"] is not None and field_text(row["rf"]) != size_text(row["rf"])]
    if beyond:
        lines.append(f"clipped to the {size_text(networks.INPUT_SHAPE[1:])} image: the textbook field of "
                     f"{beyond[0]['layer']} is {size_text(beyond[0]['rf'])}, reaching past the image's edges, "
                     "where there are no pixels to read")
    return "\n".join(lines)


def last_convolution(rows):
    """The row of the last convolution with more than one unit per map, among receptive_fields' rows (None
    without a convolution). A 1x1 convolution after global average pooling is a linear layer on the pooled
    values: the field the assignments ask about is the one the pooling averages, the convolution's before it."""
    convolutions = [row for row in rows if row["kind"] == "conv"]
    spatial = [row for row in convolutions if row["shape"][-2:] != (1, 1)]
    return (spatial or convolutions or [None])[-1]


def receptive_field_box(field, row, col):
    """(top, left, bottom, right), inclusive, of the input pixels that unit (row, col) of a layer reads; `field`
    is that layer's dict from receptive_fields. Padding is not input: a unit near the edge reads less than its
    textbook field, and its box says so. A linear layer, or a global pooling, has the one unit (0, 0)."""
    (top, bottom), (left, right) = field["spans"][0][row], field["spans"][1][col]
    return top, left, bottom, right


def activations(model, images, as_read=False):
    """{layer: output} of each convolution, pooling and merge for a batch, in forward order, as the model computed
    them, under the caller's grad mode (torch.no_grad() when only looking). as_read: each as the next layer reads
    it, after the batch norm, ReLU and dropout that follow it alone (what the Inside view shows)."""
    was_training = model.training
    rows = _walk(model, networks.trace(model.eval(), images), images)
    model.train(was_training)
    return {row["layer"]: row["read" if as_read else "output"] for row in rows if row["kind"] != "linear"}


def probabilities(model, images):
    return model(images).float().softmax(dim=1)  # the same for log-probabilities (Net's) and for plain scores


def _last_conv_module(model):
    row = last_convolution(receptive_fields(model))
    modules = dict(model.named_modules())
    if row is None or row["layer"] not in modules:
        raise ValueError(f"Grad-CAM needs a convolution module (nn.Conv2d), and {networks.name_of(model)} has none: "
                         "use another attribution method")
    return modules[row["layer"]]


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
    "gradcam": lambda model, images, targets, background: attr.LayerAttribution.interpolate(
        attr.LayerGradCam(model, _last_conv_module(model)).attribute(images, target=targets, relu_attributions=True),
        images.shape[-2:], interpolate_mode="bilinear"),
}
DEFAULT_METHOD = "integrated_gradients"


def attribution(model, images, targets, method=DEFAULT_METHOD):
    """How much each pixel raised the score of `targets` (any digit per image, not only the predicted one),
    as a float tensor (N, 28, 28) on the CPU: larger where a pixel did more. `images` are normalized
    (N, 1, 28, 28). Built on Captum; the baseline, where a method takes one, is the black background.

    method: integrated_gradients (the default: the most faithful by deletion_test, see docs/inside.md),
    occlusion (3x3 patches), deeplift, input_x_gradient, saliency, or gradcam (Grad-CAM on the last
    convolution, upsampled)."""
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
            return probabilities(model, deleted).gather(1, targets[:, None]).mean().item()

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


def plot_feature_maps(model, image, layers=None):
    """The most active feature maps of each convolution (or of `layers`) for one normalized (1, 28, 28) image."""
    import matplotlib.pyplot as plt
    rows = {row["layer"]: row for row in receptive_fields(model)}
    layers = layers or [name for name, row in rows.items() if row["kind"] == "conv"]
    with torch.no_grad():
        maps = activations(model, image.unsqueeze(0).to(next(model.parameters()).device), as_read=True)
    fig, axes = plt.subplots(len(layers), 1, figsize=(12, 1.9 * len(layers)), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers):
        ax.imshow(feature_map_grid(maps[layer][0])[0])
        ax.set_title(f"{layer}: {size_text(rows[layer]['shape'][1:])} maps, the 8 most active of {maps[layer].shape[1]}; "
                     f"each unit sees {field_text(rows[layer]['rf'])} input pixels", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_attributions(model, incorrect_pred, count=20, cols=5):
    """Over each misclassified digit of the gallery (pictures.plot_incorrect): which pixels raised the score of
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
