"""The original pipeline against the fast path, measured in one run on this machine.

    python benchmark.py            # images/s of each, where a fast step's time goes, last line 'speedup: X.XX'
    python benchmark.py --network small:SmallNet --batch-size 128   # the same for another network and recipe
    python benchmark.py --full     # the whole 20-epoch fast recipe (S5.ipynb, fast=True): time, accuracy, RSS
    python benchmark.py --full --pipeline original --epochs 1   # what one epoch of the original costs here
    python benchmark.py --ablation # the fast step with each of its mechanisms switched off in turn
    S5_PRECISION=fp32 python benchmark.py   # the fast path in a precision of your choice (bf16, fp16, fp32)

Both pipelines train the same network with the same recipe through training.train, each with its own Step;
they take turns, so that a drift in the machine's speed hits both. The arithmetic limit is measured in the
precision the fast path uses on this device (fast.precision_choice), never in one the device would have to
emulate. Reads MNIST from MNIST_DATA_DIR (data.py says where else it looks)."""
import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.nn as nn

from s5 import networks
from s5.data import MNISTUnavailable, load_mnist, train_augmentation
from s5.env import get_device, require
from s5 import fast as fast_module
from s5.fast import FastPath
from s5.training import Recipe, Training, add_recipe_options, autocast, recipe_from_args, train

device = get_device()
# What the fast path does beyond holding the data on the device and augmenting whole batches there; --ablation
# switches each off in turn (make_pipeline says how).
MECHANISMS = ("precision", "channels_last", "freed memory")


class Steps:
    """The next `count` batches of a loader; the first is fetched before the clock starts,
    so that starting DataLoader workers is not counted (a real epoch starts them once per 118 steps)."""

    def __init__(self, loader, count):
        self.count = count
        self.iterator = iter(loader)
        self.first = next(self.iterator)

    def __len__(self):
        return self.count

    def __iter__(self):
        yield self.first
        for _ in range(self.count - 1):
            yield next(self.iterator)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def seconds_of(work, repeats):
    """The seconds of `repeats` calls of `work`, after one untimed call that picks algorithms and allocates."""
    work()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(work, repeats):
    return statistics.median(seconds_of(work, repeats))


HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, "S5.ipynb")


def make_pipeline(fast, train_data, network, recipe, off=None):
    """(training.Training, the loader of augmented batches) for one pipeline as S5.ipynb builds it, without a test
    loader: the fast path through its door, the original pipeline as the original's DataLoader and the plain Step.
    off: one of the fast path's MECHANISMS, switched off (in this process only, which is its own)."""
    if fast:
        if off == "freed memory":
            fast_module.keep_freed_memory = lambda: False
        path = FastPath(train_data, None, device, recipe.batch_size)
        training = path.training(networks.build(network), recipe, "fp32" if off == "precision" else None)
        if off == "channels_last":
            training.model.to(memory_format=torch.contiguous_format)
        return training, path.train_loader
    loader = torch.utils.data.DataLoader(train_data, batch_size=recipe.batch_size, shuffle=True, num_workers=2,
                                         pin_memory=device.type == "cuda")
    return Training.plain(networks.build(network).to(device), device, loader, None, recipe), loader


def images_per_second(pipeline, steps, batch_size):
    training = pipeline[0]
    batches = Steps(training.batches, steps)
    sync()
    start = time.perf_counter()
    train(training.model, device, batches, training.optimizer, training.criterion, training.step)
    sync()
    return steps * batch_size / (time.perf_counter() - start)


def matmul_peak(amp_dtype, repeats=10):
    """Matrix-multiply GFLOP/s in the fast path's dtype on this device: the ceiling for a step's arithmetic.

    The best of `repeats` products, not their median: on a shared machine a neighbour's load makes some
    products slow, and a ceiling measured low would put the fast path above 100% of it."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=amp_dtype or torch.float32) for _ in range(2))
    return 2 * n ** 3 / min(seconds_of(lambda: a @ b, repeats)) / 1e9


def layers_of(model, data):
    """[(name, module, its input, forward FLOPs)] of the convolutions and linear layers, from a real forward."""
    name_of = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    layers = []

    def record(module, inputs, output):
        fan_in = module.weight[0].numel()  # in_channels * kh * kw, or in_features
        layers.append((name_of[module], module, inputs[0].detach(), 2 * output.numel() * fan_in))

    hooks = [m.register_forward_hook(record) for m in name_of]
    with torch.no_grad():
        model(data)
    for hook in hooks:
        hook.remove()
    return layers


def conv_times(conv, inputs, amp_dtype, repeats):
    """Median seconds of one convolution's forward, its input gradient and its weight gradient (with the
    bias's, where it has one: batch norm's networks leave it out), in the fast path's precision and memory format. conv1's input gradient is None: its input is
    the data, whose gradient nobody computes."""
    inputs = inputs.clone().requires_grad_(conv.in_channels > 1)

    def forward():  # with autograd recording, as in training
        with autocast(device, amp_dtype):
            return conv(inputs)

    output = forward()
    grad = torch.randn_like(output)

    def gradient_of(wrt):  # autograd computes only the gradients asked for
        return lambda: torch.autograd.grad(output, wrt, grad, retain_graph=True)

    input_s = median_seconds(gradient_of([inputs]), repeats) if inputs.requires_grad else None
    return (median_seconds(forward, repeats), input_s,
            median_seconds(gradient_of([p for p in (conv.weight, conv.bias) if p is not None]), repeats))


def layout_of(step):
    """The memory layout a Step trains its model in: channels_last, or for batch norm's networks on the CPU the
    plain layout (fast.prepare_fast)."""
    weights = [p for p in step.model.parameters() if p.dim() == 4]
    return "channels_last" if all(w.is_contiguous(memory_format=torch.channels_last) for w in weights) else "NCHW"


def step_breakdown(pipeline, steps, batch_size):
    """Median milliseconds of each phase of the fast path's Step, timed one phase at a time (eagerly); the whole
    step as a CUDA graph replay, where the fast path uses one; each convolution alone; the FLOPs of a step and
    the matmul peak, all in the fast path's precision."""
    training, loader = pipeline
    step = training.step.step if training.cuda_graph else training.step  # the Step a graph replays
    parts = {"augmentation": [], "forward": [], "backward": [], "optimizer": []}
    iterator = iter(loader)
    training.model.train()
    for i in range(steps + 1):
        marks = [time.perf_counter()]
        data, target = next(iterator)
        sync()
        marks.append(time.perf_counter())
        loss, _ = step.forward(data, target)
        sync()
        marks.append(time.perf_counter())
        step.backward(loss)
        sync()
        marks.append(time.perf_counter())
        step.update()
        sync()
        marks.append(time.perf_counter())
        if i >= 1:  # after a warm-up step
            for name, begin, end in zip(parts, marks, marks[1:]):
                parts[name].append(1000 * (end - begin))
    graph_ms = None
    if training.cuda_graph:
        indices = next(iter(training.batches))
        graph_ms = 1000 * median_seconds(lambda: training.step(indices), steps)
    layers = layers_of(training.model, data)
    forward = sum(flops for *_, flops in layers)
    backward = 2 * forward - layers[0][3]  # twice the forward, less the first layer's input gradient, never needed
    convs = [(name, tuple(x.shape[1:]), flops, *conv_times(m, x, training.amp_dtype, steps))
             for name, m, x, flops in layers if isinstance(m, nn.Conv2d)]
    return {"precision": training.precision, "reason": training.precision_reason, "layout": layout_of(step), "peak": matmul_peak(training.amp_dtype),
            "forward": forward, "backward": backward, "parts": {name: statistics.median(v) for name, v in parts.items()},
            "convs": convs, "graph": graph_ms}


def report_breakdown(b, batch_size):
    peak, parts = b["peak"], b["parts"]
    total = sum(parts.values())

    def rate(flops, seconds):
        return f"{flops / seconds / 1e9:6.0f} GFLOP/s = {100 * flops / seconds / 1e9 / peak:3.0f}% of peak"

    print(f"\nfast step breakdown ({device}, {b['precision']}, batch {batch_size}; {b['precision']} matmul peak "
          f"{peak:.0f} GFLOP/s):")
    for name, ms in parts.items():
        flops = b.get(name) if name in ("forward", "backward") else None
        print(f"  {name:<13}{ms:8.1f} ms  {100 * ms / total:4.0f}%" + (f"  {rate(flops, ms / 1000)}" if flops else ""))
    floor = (b["forward"] + b["backward"]) / peak / 1e6
    print(f"  whole step   {total:8.1f} ms; its arithmetic at peak would take {floor:.1f} ms "
          f"({100 * floor / total:.0f}% of the way there)")
    if b["graph"] is not None:
        print(f"  whole step as one CUDA graph replay (what the fast path runs here) {b['graph']:.2f} ms "
              f"({100 * floor / b['graph']:.0f}% of the way there)")
    print(f"\neach convolution alone ({b['precision']}, batch {batch_size}): ms, GFLOP/s, % of the matmul peak; "
          "each gradient costs as many FLOPs as the forward")
    print(f"  {'':6}{'input':>10}  {'forward':<24}{'input gradient':<24}{'weight gradient':<24}backward (both)")

    def cell(flops, seconds):
        if seconds is None:
            return f"{'not needed':<24}"
        gflops = flops / seconds / 1e9
        return f"{1000 * seconds:7.1f} ms {gflops:5.0f} {100 * gflops / peak:3.0f}%    "

    for name, shape, flops, forward_s, input_s, weight_s in b["convs"]:
        backward_s, backward_flops = weight_s + (input_s or 0), flops * (1 if input_s is None else 2)
        print(f"  {name:<6}{'x'.join(map(str, shape)):>10}  {cell(flops, forward_s)}{cell(flops, input_s)}"
              f"{cell(flops, weight_s)}{cell(backward_flops, backward_s).rstrip()}")


def serve(conn, fast, network, recipe, off=None):
    """Runs one pipeline in a process of its own and answers ('rate', steps) and ('breakdown', steps).

    Its own process, because the fast path changes how this process's memory allocator behaves
    (fast.keep_freed_memory), which would also speed up the original pipeline as the original never was."""
    torch.manual_seed(0)
    train_data = load_mnist(train=True, transform=train_augmentation(recipe.rotation))
    pipeline = make_pipeline(fast, train_data, network, recipe, off)
    answers = {"rate": images_per_second, "breakdown": step_breakdown}
    for command, steps in iter(conn.recv, ("stop", 0)):
        conn.send(answers[command](pipeline, steps, recipe.batch_size))


class Workers:
    """Pipelines, each in a process of its own (serve), by name: {name: (fast, off)}; asked in turn, round by round."""

    def __init__(self, pipelines, network, recipe):
        context = multiprocessing.get_context("spawn")
        self.workers = {}
        for name, (fast, off) in pipelines.items():
            conn, child_end = context.Pipe()
            process = context.Process(target=serve, args=(child_end, fast, network, recipe, off))
            process.start()
            child_end.close()  # so that a crashed worker shows up as EOFError here
            self.workers[name] = conn, process

    def ask(self, name, command, steps):
        conn = self.workers[name][0]
        try:
            conn.send((command, steps))
            return conn.recv()
        except (EOFError, OSError):  # the pipe closed or broke: the worker is gone
            raise SystemExit(f"benchmark.py: the {name} pipeline's process failed (its error is above)") from None

    def rates(self, rounds, steps):
        """{name: [images/s of each round]}: round 0 warms every pipeline up (first calls are slow), then each
        round asks them all, in an order that turns round by round, so that a drift in the machine's speed hits
        each alike."""
        names = list(self.workers)
        rates = {name: [] for name in names}
        for rnd in range(rounds + 1):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                rate = self.ask(name, "rate", steps if rnd else 1)
                if rnd:
                    rates[name].append(rate)
                    print(f"  round {rnd} {name}: {rate:8.0f} images/s", flush=True)
        return rates

    def close(self):
        for conn, process in self.workers.values():
            if process.is_alive():
                with contextlib.suppress(OSError):  # it may end between the question and the send
                    conn.send(("stop", 0))
            process.join()


def run_throughput(args):
    print(f"device: {device}; {args.network} ({networks.parameter_count(networks.build(args.network)):,} parameters), "
          f"{args.rounds} alternating rounds of {args.steps} steps (batch {args.recipe.batch_size}) after a warm-up "
          "round; each pipeline in its own process")
    workers = Workers({"original": (False, None), "fast": (True, None)}, args.network, args.recipe)
    try:
        rates = workers.rates(args.rounds, args.steps)
        breakdown = workers.ask("fast", "breakdown", args.steps)
    finally:
        workers.close()
    report_breakdown(breakdown, args.recipe.batch_size)
    original, fast = statistics.median(rates["original"]), statistics.median(rates["fast"])
    print(f"\noriginal pipeline (PIL transforms, 2 workers, fp32, NCHW): {original:8.0f} images/s (median)")
    print(f"fast path (device-resident, batched augmentation, {breakdown['precision']}, {breakdown['layout']}): "
          f"{fast:8.0f} images/s (median); precision {breakdown['reason']}")
    per_image = (breakdown["forward"] + breakdown["backward"]) / args.recipe.batch_size
    limit = breakdown["peak"] * 1e9 / per_image
    print(f"fast path at {100 * fast / limit:.0f}% of this device's {breakdown['precision']} limit "
          f"({breakdown['peak']:.0f} GFLOP/s / {per_image / 1e6:.0f} MFLOP per training image = {limit:.0f} images/s)")
    print(f"speedup: {fast / original:.2f}")


def mechanisms_here(network):
    """The fast path's MECHANISMS that act on this device for `network`, each of which --ablation switches off."""
    model = networks.build(network)
    acting = {"precision": fast_module.precision_choice(device)[0] is not None,
              "channels_last": device.type != "cpu" or not networks.uses(model)["batch norm"],
              "freed memory": device.type == "cpu" and sys.platform.startswith("linux")}
    return [name for name in MECHANISMS if acting[name]]


def run_ablation(args):
    """The fast path with each of its mechanisms switched off in turn, every variant in its own process, all taking
    turns in each round; the table gives each mechanism's step time with and without it."""
    off = mechanisms_here(args.network)
    print(f"device: {device}; {args.network}, batch {args.recipe.batch_size}; the fast path with each of its "
          f"mechanisms acting here switched off in turn ({', '.join(off)}), {args.rounds} rounds of {args.steps} "
          "steps, each variant in its own process")
    variants = {"fast": (True, None), **{f"without {name}": (True, name) for name in off}}
    workers = Workers(variants, args.network, args.recipe)
    try:
        rates = workers.rates(args.rounds, args.steps)
    finally:
        workers.close()
    ms = {name: 1000 * args.recipe.batch_size / statistics.median(r) for name, r in rates.items()}
    print(f"\n{'mechanism':<16}{'with':>10}{'without':>10}  the step without it")
    for name in off:
        print(f"{name:<16}{ms['fast']:8.1f} ms{ms['without ' + name]:8.1f} ms  "
              f"{100 * (ms['without ' + name] / ms['fast'] - 1):+.0f}%")


def run_full(args):
    papermill = require("papermill", "papermill")
    from s5.checkpoint import read_record

    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.pt")
        start = time.perf_counter()
        papermill.execute_notebook(
            NOTEBOOK, os.path.join(tmp, "out.ipynb"), cwd=HERE, progress_bar=False,
            parameters={"network": args.network, "recipe": dataclasses.asdict(args.recipe),
                        "fast": args.pipeline == "fast", "seed": args.seed, "weights_path": weights,
                        "subset": args.subset})
        wall = time.perf_counter() - start
        state = read_record(weights)
    # the notebook's kernel is a child process that has ended: its peak RSS is counted here (KiB on Linux)
    rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
    epoch_times = state["history"]["epoch_seconds"]
    reached = [(epoch, sum(epoch_times[:epoch])) for epoch, accuracy in enumerate(state["history"]["test_acc"], 1)
               if accuracy >= 99.0]
    first_99 = (f"; first at 99.0% or more after epoch {reached[0][0]}, {reached[0][1]:.2f} s into the loop (test "
                "passes included)" if reached else "; never at 99.0%")
    per_epoch = f", {statistics.median(epoch_times):.2f} s per epoch (median; the first {epoch_times[0]:.2f} s)"
    how = state["precision"] + (", one CUDA graph per step" if state["cuda_graph"] else "")
    print(f"full {args.pipeline} run of {args.network} on {device} ({how}): {len(epoch_times)} epochs, "
          f"seed {args.seed}: "
          f"wall {wall:.1f} s "
          f"(notebook start to end), training loop {state['train_seconds']:.1f} s{per_epoch}, "
          f"final test accuracy {state['history']['test_acc'][-1]:.2f}%{first_99}, peak RSS {rss_gib:.2f} GiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run the whole recipe through S5.ipynb")
    parser.add_argument("--ablation", action="store_true",
                        help="the fast path's step time with each of its mechanisms switched off in turn")
    parser.add_argument("--pipeline", choices=["fast", "original"], default="fast", help="which pipeline --full runs",
                        type=lambda name: "original" if name == "seed" else name)  # its name before 'original'
    parser.add_argument("--subset", type=int, default=None, help="--full on the first N images only (a dry run)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the full run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--steps", type=int, default=6, help="training steps per round")
    networks.add_network_option(parser)
    add_recipe_options(parser)
    args = parser.parse_args(argv)
    try:
        args.recipe = recipe_from_args(args, Recipe.of(networks.network_class(args.network)))
        networks.build(args.network)
    except ValueError as e:  # a NetworkError too
        parser.error(str(e))
    # no progress bars in the timings; tqdm reads this at import, in the processes that train
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.rounds < 1 or args.steps < 2:
        parser.error("--rounds must be at least 1 and --steps at least 2")
    try:  # here, in one sentence, rather than as a traceback from each pipeline's process
        load_mnist(train=True)
    except MNISTUnavailable as e:
        parser.exit(2, f"benchmark.py: {e}\n")
    if args.full:
        run_full(args)
    elif args.ablation:
        run_ablation(args)
    else:
        run_throughput(args)


if __name__ == "__main__":
    sys.exit(main())
