"""Writes the trained Net as one self-contained ONNX file, for ONNX Runtime and the page in web/.

    pip install -r requirements-export.txt
    python export.py                                    # s5_net.pt -> my_s5_net.onnx
    python export.py --checkpoint my_s5_net.pt --output web/s5_net.onnx   # the page's file: name it to replace it
    python export.py --check                            # also compare with PyTorch on the 10,000 MNIST test images

The file takes a float32 batch "image" of shape (N, 1, 28, 28), normalized as in training, and gives
"log_probabilities" of shape (N, 10). The weights are inside it (no separate .data file), so a web page
loads one file. Written to a temporary file and renamed, so a failed export leaves nothing half-written."""
import argparse
import os
import sys
import warnings

import numpy as np
import torch

from checkpoint import write_atomically
from predict import parse_with_model

INPUT, OUTPUT = "image", "log_probabilities"


def export_onnx(model, path):
    """Writes `model` (a Net) to `path` as one ONNX file with a dynamic batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        # torch.export's exporter, named: it is the default from torch 2.9 on, not before.
        program = torch.onnx.export(model.eval(), (torch.zeros(1, 1, 28, 28),), dynamo=True,
                                    input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    # the serialized model holds its weights: one file, no .data beside it, which a page loads simply
    write_atomically(path, lambda f: f.write(program.model_proto.SerializeToString()))


def run_onnx(path, images, batch_size=1000):
    """Log-probabilities from ONNX Runtime on the CPU for a float32 array of shape (N, 1, 28, 28)."""
    import onnxruntime
    runtime = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([runtime.run([OUTPUT], {INPUT: images[i:i + batch_size]})[0]
                           for i in range(0, len(images), batch_size)])


def parity(path, model, images):
    """(answers that agree, images, largest difference of any log-probability) between the ONNX file and
    PyTorch on `images`, a normalized float tensor (N, 1, 28, 28)."""
    with torch.inference_mode():
        expected = model.eval()(images).numpy()
    got = run_onnx(path, images.numpy())
    agree = int((got.argmax(1) == expected.argmax(1)).sum())
    return agree, len(images), float(np.abs(got - expected).max())


def mnist_test_images():
    from data import MNIST_MEAN, MNIST_STD, load_mnist
    test_set = load_mnist(train=False)
    return ((test_set.data.float() / 255 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="my_s5_net.onnx", help="the ONNX file to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with PyTorch on the MNIST test set")
    args, model = parse_with_model(parser, argv, "export.py")
    if model is None:
        return 1
    if os.path.isdir(args.output) or not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        print(f"export.py: {args.output} is a folder or lies in a folder that does not exist: name a file "
              "in an existing folder with --output", file=sys.stderr)
        return 1
    export_onnx(model, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes) from {args.checkpoint}")
    if args.check:
        agree, count, largest = parity(args.output, model, mnist_test_images())
        print(f"onnxruntime and PyTorch give the same answer on {agree} of {count} MNIST test images; "
              f"largest difference of any log-probability {largest:.1e}")
        return 0 if agree == count else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
