"""Checks a network against an assignment's budget over several seeds, and says which line holds.

    python budget.py small:SeparableNet                   # the defaults: < 8,000 parameters, <= 15 epochs,
                                                          # 99.4% in each of the last 3 epochs, on 3 seeds
    python budget.py my_nets:Net6 --scheduler onecycle --lr 0.6 --batch-size 128 --rotation 7
    python budget.py my_nets:Net6 --parameters 20000 --max-epochs 19 --last 1 --seeds 1   # the first assignment's

Each seed trains on the fast path (fast.FastPath) with the network's own recipe (its class attribute `recipe`, a
dict of training.Recipe's fields; the original's where it has none), changed by the options given, and is tested
after every epoch. The table names the network's parameters, what it uses (batch norm, dropout, global average
pooling, a linear layer), the receptive field of its last convolution, and for each seed its accuracy over the
last epochs, its best and its time per epoch. Each seed's run, its weights and record (checkpoint.save_record, with
the budget and that seed's verdict), goes to runs/network-seedN.pt, which predict.py, app.py, export.py and
explain.py read alone (--checkpoint). Exit status: 0 when every line holds, 1 when one falls short, 2 for
bad input (said in one sentence, before any training), 130 on Ctrl-C, which stops with the table of what finished."""
import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch

import networks
from checkpoint import save_record
from explain import field_text, last_convolution, receptive_fields
from training import Recipe, add_recipe_options, evaluate, recipe_from_args, train


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
    history's lists: 'train_losses', 'train_acc', 'test_losses', 'test_acc', 'epoch_seconds'}. `model` is built by
    the caller after torch.manual_seed(seed), as the notebook builds it; report(line) is told each epoch's result. A
    Ctrl-C keeps the epochs that finished, in the run it raises with (as .run)."""
    from fast import FastPath
    path = FastPath(train_data, test_data, device, recipe.batch_size)
    training = path.training(model, recipe, precision)
    run = {"seed": seed, "epochs": recipe.epochs, "model": training.model, "precision": training.precision,
           "cuda_graph": training.cuda_graph, **{key: [] for key in HISTORY}}
    try:
        for epoch in range(1, recipe.epochs + 1):
            start = time.perf_counter()
            train_acc, train_loss = train(training.model, device, training.batches, training.optimizer,
                                          training.criterion, training.step, epoch)
            correct, count, test_loss = evaluate(training.model, device, training.test_loader, training.criterion,
                                                 amp_dtype=training.amp_dtype)
            if not recipe.per_batch:
                training.scheduler.step()
            for key, value in zip(HISTORY, (train_loss, train_acc, test_loss, 100 * correct / count,
                                            time.perf_counter() - start)):
                run[key].append(value)
            report(f"seed {seed}, epoch {epoch}/{recipe.epochs}: test accuracy {100 * correct / count:.2f}%")
    except KeyboardInterrupt as interrupt:
        interrupt.run = run
        raise
    return run


HISTORY = ("train_losses", "train_acc", "test_losses", "test_acc", "epoch_seconds")  # a record's, per epoch


def seed_holds(run, budget):
    """Whether a seed's run finished and reached the target in each of its last epochs."""
    last = run["test_acc"][-budget.last:]
    return len(run["test_acc"]) == run["epochs"] and len(last) == budget.last and min(last) >= budget.target


def run_path(folder, network, seed):
    """Where a seed's run goes: named after the network and the seed, e.g. runs/my_nets.Net6-seed1.pt."""
    return os.path.join(folder, f"{network.replace(':', '.')}-seed{seed}.pt")


def save_run(path, network, recipe, budget, run):
    """A finished seed's record (checkpoint.save_record), with the budget it was checked against and its verdict."""
    save_record(path, run["model"], {key: run[key] for key in HISTORY}, network=network, recipe=recipe,
                seed=run["seed"], fast=True, precision=run["precision"], cuda_graph=run["cuda_graph"],
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
        complete = len(accuracies) == run["epochs"]
        if accuracies:
            best = max(accuracies)
            value = (f"last {len(last)}: {' '.join(f'{a:.2f}' for a in last)}; best {best:.2f} (epoch "
                     f"{accuracies.index(best) + 1}); {statistics.median(run['epoch_seconds']):.1f} s per epoch")
        else:
            value = "no epoch finished"
        if not complete:
            value += f"; stopped after {len(accuracies)} of {run['epochs']} epochs"
        lines.append((f"seed {run['seed']}", value, "holds" if seed_holds(run, budget) else "falls short"))
    lows = [min(run["test_acc"][-budget.last:]) for run in runs if run["test_acc"]]
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


OPTIONS = {"parameters": ("--parameters", int, "fewer parameters than this"),
           "epochs": ("--max-epochs", int, "at most this many epochs (the recipe's --epochs)"),
           "target": ("--target", float, "test accuracy in %% to reach"),
           "last": ("--last", int, "in each of this many last epochs"),
           "seeds": ("--seeds", int, "on each of this many seeds (1, 2, ...)")}


def budget_number(option, kind):
    """argparse's type for a budget number: one sentence naming the option when it is not a number."""
    def parse(text):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: give {option} as a whole number"
                                             if kind is int else f"{text!r} is not a number: give {option} as one, "
                                             "such as 99.4") from None
    return parse


FALLBACK = Recipe(epochs=Budget.epochs)  # for a network that carries no recipe: the original's, as long as allowed


def writable_folder(folder):
    """Makes `folder` if need be; ValueError in one sentence when it cannot hold the runs."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"the runs cannot go to {folder} ({e.strerror}): name a folder that can hold them with "
                         "--runs") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"the runs cannot go to {folder} (not writable): name a folder that can hold them with --runs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network_named", metavar="network", nargs="?",
                        help="the network, as module:Class (or --network)")
    networks.add_network_option(parser, None, None)
    for name, (option, kind, text) in OPTIONS.items():
        parser.add_argument(option, dest=f"budget_{name}", type=budget_number(option, kind),  # --epochs is the recipe's
                            default=getattr(Budget, name),
                            help=f"{text} (default: %(default)s)")
    add_recipe_options(parser, FALLBACK)
    parser.add_argument("--subset", type=int, default=None, help="train and test on the first N images (a dry run)")
    parser.add_argument("--runs", default="runs", help="the folder each seed's run goes to, its weights and record, "
                                                        "as network-seedN.pt (default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.network_named is None) == (args.network is None):
        parser.error("name one network, as module:Class: python budget.py my_nets:Net6, or --network my_nets:Net6")
    args.network = args.network or args.network_named
    from data import MNISTUnavailable, load_mnist
    from env import get_device
    try:
        budget = Budget(*(getattr(args, f"budget_{name}") for name in OPTIONS))
        recipe = recipe_from_args(args, Recipe.of(networks.network_class(args.network), FALLBACK))
        if recipe.epochs < budget.last:
            raise ValueError(f"{recipe.epochs} epochs cannot show {budget.last} last epochs: train at least "
                             f"{budget.last} (--epochs), or read fewer (--last {recipe.epochs})")
        model = networks.build(args.network)
        writable_folder(args.runs)
        train_data = load_mnist(train=True, subset=args.subset)
        test_data = load_mnist(train=False, subset=args.subset)
    except (ValueError, MNISTUnavailable) as e:  # a NetworkError is a ValueError
        print(f"budget.py: {e}", file=sys.stderr)
        return 2
    device, runs = get_device(), []
    from fast import precision_choice
    print(f"{args.network} on {device}; precision {precision_choice(device)[1]}", flush=True)
    try:
        for seed in range(1, budget.seeds + 1):
            torch.manual_seed(seed)
            runs.append(train_seed(networks.build(args.network), recipe, seed, train_data, test_data, device,
                                   report=lambda line: print(line, flush=True)))
            path = run_path(args.runs, args.network, seed)
            save_run(path, args.network, recipe, budget, runs[-1])
            print(f"seed {seed}: its run is in {path}", flush=True)
    except KeyboardInterrupt as interrupt:
        runs.append(getattr(interrupt, "run", None) or {"seed": len(runs) + 1, "epochs": recipe.epochs,
                                                          **{key: [] for key in HISTORY}})
        print("\nstopped (Ctrl-C): the table of what finished", flush=True)
        print_verdict(verdict(model, args.network, recipe, budget, runs)[0])
        return 130
    lines, ok = verdict(model, args.network, recipe, budget, runs)
    print()
    print_verdict(lines)
    minutes = sum(sum(run["epoch_seconds"]) for run in runs) / 60
    seeds = f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
    print(f"budget.py: {args.network}, {seeds} of {recipe.epochs} epochs in {minutes:.0f} min: "
          f"{'every line holds' if ok else 'falls short'}; the runs are in {args.runs}{os.sep}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
