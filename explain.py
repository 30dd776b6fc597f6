"""Looking inside any digit classifier without changing it: how far each layer sees, what each layer outputs, and
which pixels drove an answer, with a measurement of whether that last picture is faithful.

    python explain.py                                   # the receptive-field table of model:Net
    python explain.py --network my_nets:Net6            # the same for your own network
    python explain.py --faithfulness                    # docs/inside.md's table: which attribution to believe
    python explain.py --faithfulness --digits 20        # the same on fewer digits, in seconds rather than minutes

Every layer is found by watching a real forward pass (networks.trace), so the figures follow the network as it
runs: residual adds, concatenations, global pooling and functional calls included.

Exit status: 0; 2 for a network or weights that cannot be loaded, or a --digits outside 1-10,000, said in one
sentence."""
import argparse
import sys

import torch

from s5 import networks
from s5.explain import faithfulness_table, probabilities, receptive_field_table


def print_faithfulness(model, count):
    """docs/inside.md's table, on the first `count` MNIST test digits and their true labels."""
    from s5.data import load_mnist, test_transforms
    test_set = load_mnist(train=False, transform=test_transforms)
    digits = torch.stack([test_set[i][0] for i in range(count)])
    labels = test_set.targets[:count]
    with torch.no_grad():
        before = probabilities(model, digits).gather(1, labels[:, None]).mean()
    print(f"probability of the true digit before any deletion: {before:.2f}")
    print("| method | probability left, its top 10% deleted | random ink deleted | time per image |")
    print("| --- | --- | --- | --- |")
    for method, left, random_left, seconds in faithfulness_table(model, digits, labels):
        print(f"| {method} | {left:.2f} | {random_left:.2f} | {1000 * seconds:.1f} ms |")


def digit_count(text):
    if not (text.isdigit() and 1 <= int(text) <= 10000):
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of MNIST's test digits: give one from 1 to 10,000")
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faithfulness", action="store_true",
                        help="measure each attribution method by deletion, on trained weights")
    parser.add_argument("--digits", type=digit_count, default=200, metavar="N",
                        help="with --faithfulness: on the first N test digits (default: 200; occlusion, the slowest "
                             "method, takes about a second a digit on a 2-core CPU)")
    networks.add_options(parser)
    args = parser.parse_args(argv)
    try:  # the table needs no weights; the deletion test does
        model = (networks.load(args.network, args.checkpoint) if args.faithfulness or args.checkpoint
                 else networks.build(args.network or networks.DEFAULT))
    except networks.NetworkError as e:
        print(f"explain.py: {e}", file=sys.stderr)
        return 2
    networks.say_recorded_class("explain.py", args, model)
    if args.faithfulness:
        print_faithfulness(model, args.digits)
    else:
        print(receptive_field_table(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
