"""The seed pipeline against the fast path, measured in one run on this machine.

    python benchmark.py            # images/s of each, step breakdown, last line 'speedup: X.XX'
    python benchmark.py --full     # the whole 20-epoch fast recipe (S5.ipynb, fast=True): time, accuracy, RSS

Both pipelines train the same Net with the same recipe through utils.train; they take turns, so that a
drift in the machine's speed hits both. Reads MNIST from MNIST_DATA_DIR (default ../data)."""
import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm at import: no progress bars in the timings

import torch
import torch.nn as nn
import torch.optim as optim

from data import DeviceLoader, load_mnist, train_transforms
from model import Net
from utils import device, fast_amp_dtype, prepare_fast, train


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


def make_pipeline(fast, train_data, batch_size):
    """(model, loader, optimizer, amp_dtype) of one pipeline, as S5.ipynb builds them."""
    model, amp_dtype = Net().to(device), None
    if fast:
        model, amp_dtype = prepare_fast(model, device)
        loader = DeviceLoader(train_data, batch_size, device, train=True)
    else:
        loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True, num_workers=2,
                                             pin_memory=device.type == "cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, loader, optimizer, amp_dtype


def images_per_second(pipeline, steps, batch_size):
    model, loader, optimizer, amp_dtype = pipeline
    batches = Steps(loader, steps)
    sync()
    start = time.perf_counter()
    train(model, device, batches, optimizer, nn.CrossEntropyLoss(), amp_dtype)
    sync()
    return steps * batch_size / (time.perf_counter() - start)


def forward_flops(batch_size):
    """Multiply-adds x2 of one forward pass, from the layer shapes (conv: out_h*out_w*out_c*in_c*9)."""
    convs = [(26, 32, 1), (24, 64, 32), (10, 128, 64), (8, 256, 128)]
    macs = sum(size * size * out_c * in_c * 9 for size, out_c, in_c in convs) + 4096 * 50 + 50 * 10
    return 2 * macs * batch_size


def matmul_peak():
    """bf16 matrix-multiply GFLOP/s on this device: the ceiling for a step's arithmetic."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    sync()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def step_breakdown(pipeline, steps, batch_size):
    """Median milliseconds of each part of a fast training step, timed one part at a time."""
    model, loader, optimizer, amp_dtype = pipeline
    criterion = nn.CrossEntropyLoss()
    parts = {"augmentation": [], "forward": [], "backward": [], "optimizer": []}
    iterator = iter(loader)
    model.train()
    for i in range(steps + 2):
        marks = [time.perf_counter()]
        data, target = next(iterator)
        sync()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = criterion(model(data), target)
        sync()
        marks.append(time.perf_counter())
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        optimizer.step()
        sync()
        marks.append(time.perf_counter())
        if i >= 2:  # two warm-up steps
            for name, begin, end in zip(parts, marks, marks[1:]):
                parts[name].append(1000 * (end - begin))
    return {name: statistics.median(values) for name, values in parts.items()}


def report_breakdown(parts, batch_size):
    peak = matmul_peak()
    fwd = forward_flops(batch_size)
    bwd = 2 * fwd - 2 * 26 * 26 * 32 * 9 * batch_size  # conv1 needs no gradient for its input
    total = sum(parts.values())
    print(f"\nfast step breakdown ({device}, batch {batch_size}; bf16 matmul peak {peak:.0f} GFLOP/s):")
    for name, ms in parts.items():
        flops = {"forward": fwd, "backward": bwd}.get(name)
        rate = f"  {flops / ms / 1e6:7.0f} GFLOP/s = {100 * flops / ms / 1e6 / peak:3.0f}% of peak" if flops else ""
        print(f"  {name:<13}{ms:8.1f} ms  {100 * ms / total:4.0f}%{rate}")
    floor = (fwd + bwd) / peak / 1e6
    print(f"  whole step   {total:8.1f} ms; its arithmetic at peak would take {floor:.1f} ms "
          f"({100 * floor / total:.0f}% of the way there)")


def serve(conn, fast, batch_size):
    """Runs one pipeline in a process of its own and answers ('rate', steps) and ('breakdown', steps).

    Its own process, because the fast path changes how this process's memory allocator behaves
    (utils.keep_freed_memory), which would also speed up the seed pipeline as the original never was."""
    torch.manual_seed(0)
    pipeline = make_pipeline(fast, load_mnist(train=True, transform=train_transforms), batch_size)
    answers = {"rate": images_per_second, "breakdown": step_breakdown}
    for command, steps in iter(conn.recv, ("stop", 0)):
        conn.send(answers[command](pipeline, steps, batch_size))


def run_throughput(args):
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in ("seed", "fast"):
        conn, child_end = context.Pipe()
        process = context.Process(target=serve, args=(child_end, name == "fast", args.batch_size))
        process.start()
        child_end.close()  # so that a crashed worker shows up as EOFError here
        workers[name] = conn, process

    def ask(name, command, steps):
        conn = workers[name][0]
        conn.send((command, steps))
        try:
            return conn.recv()
        except EOFError:
            raise SystemExit(f"benchmark.py: the {name} pipeline's process failed (its error is above)") from None

    print(f"device: {device}; {args.rounds} alternating rounds of {args.steps} steps "
          f"(batch {args.batch_size}) after a warm-up round; each pipeline in its own process")
    rates = {name: [] for name in workers}
    try:
        for rnd in range(args.rounds + 1):
            for name in (["seed", "fast"] if rnd % 2 else ["fast", "seed"]):
                rate = ask(name, "rate", args.steps if rnd else 2)
                if rnd:
                    rates[name].append(rate)
                    print(f"  round {rnd} {name}: {rate:8.0f} images/s", flush=True)
        parts = ask("fast", "breakdown", args.steps)
    finally:
        for conn, process in workers.values():
            if process.is_alive():
                conn.send(("stop", 0))
            process.join()
    report_breakdown(parts, args.batch_size)
    seed, fast = statistics.median(rates["seed"]), statistics.median(rates["fast"])
    print(f"\nseed pipeline (PIL transforms, 2 workers, float32, NCHW): {seed:8.0f} images/s (median)")
    print(f"fast path (device-resident, batched augmentation, {fast_amp_dtype(device)}, channels_last): "
          f"{fast:8.0f} images/s (median)")
    print(f"speedup: {fast / seed:.2f}")


def run_full(args):
    import papermill  # only the full run needs Jupyter
    from checkpoint import load_checkpoint

    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.pt")
        start = time.perf_counter()
        papermill.execute_notebook(
            os.path.join(here, "S5.ipynb"), os.path.join(tmp, "out.ipynb"), cwd=here, progress_bar=False,
            parameters={"fast": True, "epochs": args.epochs, "seed": args.seed, "weights_path": weights,
                        "batch_size": args.batch_size})
        wall = time.perf_counter() - start
        history = load_checkpoint(weights)["history"]
    # the notebook's kernel is a child process that has ended: its peak RSS is counted here (KiB on Linux)
    rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
    print(f"full fast run on {device}: {args.epochs} epochs, seed {args.seed}: wall {wall:.1f} s "
          f"(notebook start to end), final test accuracy {history['test_acc'][-1]:.2f}%, "
          f"peak RSS {rss_gib:.2f} GiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run the whole fast recipe through S5.ipynb")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the full run")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the full run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 2:
        parser.error("--rounds must be at least 1 and --steps at least 2")
    if args.full:
        run_full(args)
    else:
        run_throughput(args)


if __name__ == "__main__":
    sys.exit(main())
