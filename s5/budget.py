"""An assignment's budget: its limits, each seed's run on the fast path, the verdict line by line, and each
seed's record (budget.py at the top of the project is the command that checks it)."""
import concurrent.futures
import dataclasses
import multiprocessing
import os
import statistics

import torch

from s5 import networks
from s5.checkpoint import save_record
from s5.explain import field_text, last_convolution, receptive_fields
from s5.fast import FastPath
from s5.training import HISTORY


@dataclasses.dataclass(frozen=True)
class Budget:
    """The second assignment's budget by default: fewer than 8,000 parameters, at most 15 epochs, and 99.4% test
    accuracy or more in each of the last 3 epochs, on each of 3 seeds."""
    parameters: int = 8000
    epochs: int = 15
    target: float = 99.4
    last: int = 3
    seeds: int = 3

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"The budget's {field.name} must be a number above 0, not {value!r}")


def train_seed(model, recipe, seed, train_data, test_data, device, precision=None, report=print):
    """One seed's run on the fast path: {'seed', 'epochs': planned, 'model', 'precision', 'cuda_graph', and the
    history's lists (training.HISTORY)}. `model` is built by the caller after torch.manual_seed(seed), as the
    notebook builds it; report(line) is told each epoch's result. A Ctrl-C keeps the epochs that finished, in the
    run it raises with (as .run)."""
    training = FastPath(train_data, test_data, device, recipe.batch_size).training(model, recipe, precision)
    run = {"seed": seed, "epochs": recipe.epochs, "model": training.model, "precision": training.precision,
           "precision_reason": training.precision_reason, "cuda_graph": training.cuda_graph, **training.history}
    try:
        training.fit(recipe.epochs, lambda epoch, accuracy: report(
            f"seed {seed}, epoch {epoch}/{recipe.epochs}: test accuracy {accuracy:.2f}%"))
    except KeyboardInterrupt as interrupt:
        interrupt.run = run
        raise
    return run


SEED_THREADS = 1  # every seed trains on one thread, however many run at once: the thread count changes the order
# of PyTorch's sums on a CPU, and so a seed's figures (a 3-seed check on a 2-core AMD Zen 3 gave other figures on one
# thread than on two), which must not depend on --jobs


def default_jobs(seeds, cores):
    """How many seeds a CPU trains at once unless told: one per core when the seeds share out evenly among the cores
    or outnumber them more than twice, otherwise all of them. Three seeds on two cores run in one round, each at
    about 1.6x the time of a seed alone, rather than in two rounds of 1x (docs/own-network.md)."""
    return cores if seeds % cores == 0 or seeds > 2 * cores else seeds


def say(line):
    print(line, flush=True)


def check_seed(network, recipe, budget, seed, folder, data, device, precision, report=say):
    """One seed as budget.py checks it, in whichever process: on SEED_THREADS threads, a fresh `network` (module:Class)
    built after torch.manual_seed(seed), trained by train_seed on `data`, (train_data, test_data), kept at run_path
    (save_run), and returned without its model but with its 'path'. report(line) is told each epoch's result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(SEED_THREADS)
    try:
        torch.manual_seed(seed)
        run = train_seed(networks.build(network), recipe, seed, *data, device, precision, report)
        path = run_path(folder, network, seed)
        save_run(path, network, recipe, budget, run)  # its record names the threads it trained on
    finally:
        torch.set_num_threads(threads)
    return {**{key: value for key, value in run.items() if key != "model"}, "path": path}


def check_seeds(network, recipe, budget, folder, data, device, precision, jobs=1):
    """Every seed of the budget (1, 2, ...) by check_seed, `jobs` at a time, each in a process of its own when more
    than one; their runs in seed order. A Ctrl-C raises KeyboardInterrupt with .runs: the seeds that finished and,
    one at a time, the epochs of the seed it stopped."""
    seeds = range(1, budget.seeds + 1)
    runs = {}

    def finished(seed, run):
        runs[seed] = run
        say(f"seed {seed}: its run is in {run['path']}")
    try:
        if jobs == 1:
            for seed in seeds:
                finished(seed, check_seed(network, recipe, budget, seed, folder, data, device, precision))
        else:
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(check_seed, network, recipe, budget, seed, folder, data, device, precision): seed
                           for seed in seeds}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        finished(futures[future], future.result())
                except KeyboardInterrupt:
                    pool.shutdown(cancel_futures=True)
                    raise
    except KeyboardInterrupt as interrupt:
        interrupt.runs = [runs[seed] for seed in sorted(runs)] + ([interrupt.run] if hasattr(interrupt, "run") else [])
        raise
    return [runs[seed] for seed in seeds]


def finished(run):
    """Whether a seed's run trained every epoch it planned (Ctrl-C stops one early)."""
    return len(run["test_acc"]) == run["epochs"]


def seed_holds(run, budget):
    """Whether a seed's run finished and reached the target in each of its last epochs."""
    last = run["test_acc"][-budget.last:]
    return finished(run) and len(last) == budget.last and min(last) >= budget.target


def run_path(folder, network, seed):
    """Where a seed's run goes: named after the network and the seed, e.g. runs/my_nets.Net6-seed1.pt."""
    return os.path.join(folder, f"{network.replace(':', '.')}-seed{seed}.pt")


def save_run(path, network, recipe, budget, run):
    """A finished seed's record (checkpoint.save_record), with the budget it was checked against and its verdict."""
    save_record(path, run["model"], {key: run[key] for key in HISTORY}, network=network, recipe=recipe,
                seed=run["seed"], fast=True, precision=run["precision"], precision_reason=run["precision_reason"],
                cuda_graph=run["cuda_graph"],
                train_seconds=sum(run["epoch_seconds"]),
                budget={**dataclasses.asdict(budget), "holds": seed_holds(run, budget)})


def verdict(model, network, recipe, budget, runs):
    """The table's lines as (what, value, verdict), the verdict 'holds', 'falls short' or '' (a fact, no
    verdict); and whether every line with a verdict holds."""
    count = networks.parameter_count(model)
    used = networks.uses(model)
    fields = receptive_fields(model)
    last_conv = last_convolution(fields)
    lines = [("network", network, ""),
             ("parameters", f"{count:,} (budget: fewer than {budget.parameters:,})",
              "holds" if count < budget.parameters else "falls short"),
             ("epochs", f"{recipe.epochs} (budget: at most {budget.epochs})",
              "holds" if recipe.epochs <= budget.epochs else "falls short"),
             ("uses", ", ".join(f"{kind}: {'yes' if yes else 'no'}" for kind, yes in used.items()), ""),
             ("receptive field", "no convolution" if last_conv is None else
              f"{field_text(last_conv['rf'])} at its last convolution, {last_conv['layer']}", ""),
             ("recipe", ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe).items()), "")]
    for run in runs:
        accuracies = run["test_acc"]
        last = accuracies[-budget.last:]
        if accuracies:
            best = max(accuracies)
            value = (f"last {len(last)}: {' '.join(f'{a:.2f}' for a in last)}; best {best:.2f} (epoch "
                     f"{accuracies.index(best) + 1}); {statistics.median(run['epoch_seconds']):.1f} s per epoch")
        else:
            value = "no epoch finished"
        if not finished(run):
            value += f"; stopped after {len(accuracies)} of {run['epochs']} epochs"
        lines.append((f"seed {run['seed']}", value, "holds" if seed_holds(run, budget) else "falls short"))
    # a seed stopped early has no last epochs of the run: its figures would pull the spread down
    lows = [min(run["test_acc"][-budget.last:]) for run in runs if finished(run)]
    if lows:
        lines.append(("seeds hold", f"{sum(seed_holds(run, budget) for run in runs)} of {len(runs)}; the lowest of "
                      f"each one's last {budget.last}: lowest {min(lows):.2f}, median {statistics.median(lows):.2f}",
                      ""))
    missing = budget.seeds - len(runs)
    if missing > 0:
        lines.append(("seeds", f"{len(runs)} of {budget.seeds} run", "falls short"))
    lines.append(("target", f"{budget.target}% or more in each of the last {budget.last} epochs of every seed", ""))
    return lines, all(v == "holds" for _, _, v in lines if v)


def print_verdict(lines):
    """The verdict before the value, so that a long value (the recipe) pushes no verdict out of sight."""
    width = max(len(what) for what, _, _ in lines) + 2
    for what, value, holds in lines:
        print(f"{what:<{width}}{holds:<13}{value}")
