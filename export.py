"""Writes a trained network as one self-contained ONNX file, for ONNX Runtime and the page in web/.

    pip install -r requirements/export.txt
    python export.py                                    # s5_net.pt -> my_s5_net.onnx
    python export.py --checkpoint my_s5_net.pt --output web/s5_net.onnx   # the page's file: name it to replace it
    python export.py --checkpoint runs/my_nets.Net6-seed1.pt   # your own network's run -> my_nets.Net6.onnx
    python export.py --check                            # also compare with PyTorch on the 10,000 MNIST test images

The file takes a float32 batch "pixels" of shape (N, 1, 28, 28): grey levels in [0, 1], white ink on black, the
normalization being inside the graph, so that whoever runs it needs no constants. It gives "scores" of shape
(N, 10), whatever the network gives (Net: log-probabilities; a softmax turns either into probabilities). The
weights are inside it (no separate .data file), so a web page loads one file. Written to a temporary file and
renamed, so a failed export leaves nothing half-written; --check reads MNIST before it writes anything. Exit status:
0 when the file is written (with --check, and every answer agrees); 1 when --check finds an answer apart; 2 for bad
input (weights or a network that cannot be used, an output that is a folder or lies in a missing one, --check
without MNIST), said in one sentence before anything is written."""
import argparse
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

from s5 import networks
from s5.checkpoint import output_file, write_atomically
from s5.data import normalize

INPUT, OUTPUT = "pixels", "scores"


class FromPixels(nn.Module):
    """The network behind its normalization: grey levels in [0, 1] in, the network's scores out."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, pixels):
        return self.network(normalize(pixels))


def export_onnx(model, path):
    """Writes `model`, behind its normalization, to `path` as one ONNX file with a dynamic batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        # torch.export's exporter, named: it is the default from torch 2.9 on, not before.
        program = torch.onnx.export(FromPixels(model.eval()), (torch.zeros(1, 1, 28, 28),), dynamo=True,
                                    input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    # the serialized model holds its weights: one file, no .data beside it, which a page loads simply
    write_atomically(path, lambda f: f.write(program.model_proto.SerializeToString()))


def run_onnx(path, pixels, batch_size=1000):
    """The scores from ONNX Runtime on the CPU for a float32 array of grey levels, shape (N, 1, 28, 28)."""
    import onnxruntime
    runtime = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([runtime.run([OUTPUT], {INPUT: pixels[i:i + batch_size]})[0]
                           for i in range(0, len(pixels), batch_size)])


def parity(path, model, pixels):
    """(answers that agree, images, largest difference of any score) between the ONNX file and PyTorch on
    `pixels`, a float tensor of grey levels (N, 1, 28, 28) that PyTorch's network reads normalized."""
    with torch.inference_mode():
        expected = model.eval()(normalize(pixels)).numpy()
    got = run_onnx(path, pixels.numpy())
    agree = int((got.argmax(1) == expected.argmax(1)).sum())
    return agree, len(pixels), float(np.abs(got - expected).max())


def mnist_test_pixels():
    from s5.data import load_mnist
    return (load_mnist(train=False).data.float() / 255).unsqueeze(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="the ONNX file to write (default: named after the network, my_s5_net.onnx for "
                                         "model:Net, my_nets.Net6.onnx for my_nets:Net6)")
    parser.add_argument("--check", action="store_true", help="compare with PyTorch on the MNIST test set")
    args, model = networks.from_command_line(parser, argv, "export.py")
    if model is None:
        return 2
    try:
        args.output = output_file(args.output or networks.file_name(networks.name_of(model), ".onnx"), "with --output")
    except ValueError as e:
        print(f"export.py: {e}", file=sys.stderr)
        return 2
    if args.check:
        from s5.data import MNISTUnavailable
        try:  # before writing: a check that cannot run leaves no file behind to be mistaken for a checked one
            pixels = mnist_test_pixels()
        except MNISTUnavailable as e:
            print(f"export.py: --check needs the MNIST test images: {e}", file=sys.stderr)
            return 2
    export_onnx(model, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes) of {networks.name_of(model)} from "
          f"{args.checkpoint or networks.DEFAULT_WEIGHTS}")
    if args.check:
        agree, count, largest = parity(args.output, model, pixels)
        print(f"onnxruntime and PyTorch give the same answer on {agree} of {count} MNIST test images; "
              f"largest difference of any score {largest:.1e}")
        return 0 if agree == count else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
