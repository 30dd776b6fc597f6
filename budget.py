"""Checks a network against an assignment's budget over several seeds, and says which line holds.

    python budget.py small:SeparableNet                   # the defaults: < 8,000 parameters, <= 15 epochs,
                                                          # 99.4% in each of the last 3 epochs, on 3 seeds
    python budget.py my_nets:Net6 --scheduler onecycle --lr 0.6 --batch-size 128 --rotation 7
    python budget.py my_nets:Net6 --parameters 20000 --max-epochs 19 --last 1 --seeds 1   # the first assignment's

Each seed trains on the fast path (s5.fast.FastPath) with the network's own recipe (its class attribute `recipe`,
a dict of s5.training.Recipe's fields; the original's where it has none), changed by the options given, and is
tested after every epoch. On a CPU the seeds train side by side, one process each (--jobs; see its help for how
many), each on one thread whatever --jobs says, since the thread count changes the order of PyTorch's sums and so
the figures. The table names the network's parameters, what it uses (batch norm, dropout, global average pooling,
a linear layer), the receptive field of its last convolution, and for each seed its accuracy over the last epochs,
its best and its time per epoch. Each seed's run, its weights and record (checkpoint.save_record, with the budget
and that seed's verdict), goes to runs/module.Class-seedN.pt, which predict.py, app.py, export.py and explain.py
read alone (--checkpoint). Exit status: 0 when every line holds, 1 when one falls short, 2 for bad input (said in
one sentence, before any training), 130 on Ctrl-C, which stops with the table of what finished."""
import argparse
import os
import sys
import time

from s5 import networks
from s5.budget import SEED_THREADS, Budget, check_seeds, default_jobs, print_verdict, verdict
from s5.env import cores
from s5.training import Recipe, add_recipe_options, precision_name, recipe_from_args


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
    parser.add_argument("--jobs", type=budget_number("--jobs", int), default=None,
                        help="seeds trained at once, each in a process of its own (default: on a CPU one per core, or "
                             "all of them where they do not share out evenly and are at most twice the cores; on a "
                             "GPU 1); a seed's figures are the same either way")
    parser.add_argument("--runs", default="runs", help="the folder each seed's run goes to, its weights and record, "
                                                        "as network-seedN.pt (default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.network_named is None) == (args.network is None):
        parser.error("name one network, as module:Class: python budget.py my_nets:Net6, or --network my_nets:Net6")
    args.network = args.network or args.network_named
    from s5.data import MNISTUnavailable, load_mnist
    from s5.env import get_device
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
    device = get_device()
    jobs = args.jobs if args.jobs is not None else default_jobs(budget.seeds, cores()) if device.type == "cpu" else 1
    if jobs < 1:
        print(f"budget.py: --jobs must be 1 or more, not {jobs}", file=sys.stderr)
        return 2
    from s5.fast import precision_choice
    precision, why = precision_choice(device)  # chosen once here, for every seed alike
    print(f"{args.network} on {device}; precision {why}; {jobs} seed{'s' * (jobs != 1)} at a time, each on "
          f"{SEED_THREADS} thread{'s' * (SEED_THREADS != 1)}", flush=True)
    start = time.perf_counter()
    try:
        runs = check_seeds(args.network, recipe, budget, args.runs, (train_data, test_data), device,
                           precision_name(precision), jobs)
    except KeyboardInterrupt as interrupt:
        print("\nstopped (Ctrl-C): the table of what finished", flush=True)
        print_verdict(verdict(model, args.network, recipe, budget, interrupt.runs)[0])
        return 130
    lines, ok = verdict(model, args.network, recipe, budget, runs)
    print()
    print_verdict(lines)
    minutes = (time.perf_counter() - start) / 60
    seeds = f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
    print(f"budget.py: {args.network}, {seeds} of {recipe.epochs} epochs in {minutes:.0f} min: "
          f"{'every line holds' if ok else 'falls short'}; the runs are in {args.runs}{os.sep}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
