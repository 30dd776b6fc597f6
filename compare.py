"""Compares finished runs: a line each (its network, parameters, seed, precision, last and best test accuracy, time
an epoch), then their test accuracy epoch by epoch, side by side. Any run file will do: the notebook's, the quick
look's, or budget.py's, one per seed.

    python compare.py runs/*.pt                          # the lines and the table
    python compare.py runs/*.pt --csv epochs.csv         # also every epoch of every run, a row each
    python compare.py my_s5_net.pt runs/*.pt --plot compare.png   # also test accuracy per epoch, a line a run

Exit status: 0; 2 for bad input (a file that is not a run's record, an output in a folder that does not exist),
said in one sentence before anything is written."""
import argparse
import csv
import io
import sys

from s5.checkpoint import CheckpointError, output_file, read_record, write_atomically

COLUMNS = ("train_losses", "train_acc", "test_losses", "test_acc", "epoch_seconds")  # the record's lists per epoch


def summary(path, run):
    """One line saying what a run was and how it ended."""
    acc = run["history"]["test_acc"]
    best = max(range(len(acc)), key=acc.__getitem__)
    seconds = sum(run["history"]["epoch_seconds"]) / len(acc)
    return (f"{path}: {run['network']}, {run['parameters']:,} parameters, seed {run['seed']}, {run['precision']}, "
            f"{len(acc)} epoch{'s' * (len(acc) != 1)}: last {acc[-1]:.2f}, best {acc[best]:.2f} (epoch {best + 1}), {seconds:.1f} s an epoch")


def accuracy_table(runs):
    """Test accuracy per epoch, a row an epoch and a column a run (numbered as the lines above them)."""
    longest = max(len(run["history"]["test_acc"]) for run in runs.values())
    lines = ["epoch " + "".join(f"{f'run {n}':>8}" for n in range(1, len(runs) + 1))]
    for epoch in range(longest):
        cells = (run["history"]["test_acc"][epoch] if epoch < len(run["history"]["test_acc"]) else None
                 for run in runs.values())
        lines.append(f"{epoch + 1:>5} " + "".join(f"{cell:>8.2f}" if cell is not None else " " * 8 for cell in cells))
    return lines


def epoch_rows(runs):
    """Every epoch of every run as a CSV's text: run, network, seed, epoch and the record's lists."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("run", "network", "seed", "epoch", *COLUMNS))
    for path, run in runs.items():
        history = run["history"]
        for epoch in range(len(history["test_acc"])):
            writer.writerow((path, run["network"], run["seed"], epoch + 1, *(history[c][epoch] for c in COLUMNS)))
    return out.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run files: records of finished runs")
    parser.add_argument("--csv", help="write every epoch of every run to this CSV file")
    parser.add_argument("--plot", help="draw test accuracy per epoch, a line a run, to this PNG file")
    args = parser.parse_args(argv)
    try:
        for path, option in ((args.csv, "--csv"), (args.plot, "--plot")):
            if path is not None:
                output_file(path, f"with {option}")
        runs = {path: read_record(path) for path in dict.fromkeys(args.runs)}
    except (ValueError, CheckpointError, OSError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    for n, (path, run) in enumerate(runs.items(), 1):
        print(f"run {n}  {summary(path, run)}")
    print()
    print("\n".join(accuracy_table(runs)))
    if args.csv:
        text = epoch_rows(runs)
        write_atomically(args.csv, lambda f: f.write(text.encode()))
        print(f"wrote {args.csv}: {text.count(chr(10)) - 1} epochs of {len(runs)} run{'s' * (len(runs) != 1)}")
    if args.plot:
        from s5.pictures import plot_runs
        figure = plot_runs({f"run {n}: {run['network']}, seed {run['seed']}": run["history"]
                            for n, run in enumerate(runs.values(), 1)})
        write_atomically(args.plot, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
