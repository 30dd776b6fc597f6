"""Draw a digit, see what the network sees: a local web demo of the trained Net.

    pip install -r requirements-app.txt
    python app.py                          # http://127.0.0.1:7860 (GRADIO_SERVER_PORT picks another port)
    python app.py --checkpoint my_s5_net.pt   # other weights than the shipped s5_net.pt

Draw with the mouse or a finger: each finished stroke is read the way predict.py reads an image file
(cropped to the ink, fitted into 20x20, centred by centre of mass in 28x28, as MNIST was made), and the
page shows the three likeliest digits beside the 28x28 image the network actually read. The Upload tab
and the API endpoint `predict` do the same for an image file. Runs offline: no analytics, no share link,
no fonts or scripts from other hosts."""
import argparse
import functools
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr
import numpy as np

from checkpoint import CheckpointError
from data import MNIST_MEAN, MNIST_STD
from predict import DEFAULT_WEIGHTS, ImageError, load_model, read_digit

PREVIEW_SCALE = 10  # each of the 28x28 pixels becomes a 10x10 block: enlarged without smoothing
# The sketchpad starts in its image tool, and goes back to it when cleared, and ignores strokes until
# the brush is picked; picking it on load and after each clear makes the first stroke draw.
PICK_BRUSH = """() => {
  const pick = () => {
    const brush = document.querySelector('button[aria-label="Brush"]');
    if (brush) { brush.click(); } else { setTimeout(pick, 100); }
  };
  pick();
}"""
# System fonts: the default theme would fetch its fonts from Google, which an offline machine cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def ink_of_drawing(value):
    """The ink of a sketchpad value ({'background', 'layers', 'composite'}) as an (H, W) uint8 array,
    255 where drawn; None when nothing is drawn.

    The ink is the drawn layers' opacity, so the brush colour, a dark theme and a transparent or
    coloured background cannot turn the digit into its negative. A value with no layers (an image
    pasted as the background) is read from its composite, as predict.py reads any image."""
    if value is None:
        return None
    layers = [np.asarray(layer) for layer in value.get("layers") or [] if layer is not None]
    if layers:
        ink = np.max([layer[..., 3] if layer.ndim == 3 and layer.shape[2] == 4 else np.zeros(layer.shape[:2], np.uint8)
                      for layer in layers], axis=0)
        return ink if ink.any() else None
    composite = value.get("composite")
    return None if composite is None else np.asarray(composite)


def network_view(network_input):
    """The normalized (1, 1, 28, 28) tensor the network read, as a large blocky grey picture."""
    pixels = (network_input[0, 0] * MNIST_STD + MNIST_MEAN).clamp(0, 1).mul(255).round().byte().numpy()
    return np.kron(pixels, np.ones((PREVIEW_SCALE, PREVIEW_SCALE), dtype=np.uint8))


def answer(image, model):
    """(label value, preview) for anything predict.py reads: {digit: probability} and the network's view."""
    digit, probabilities, network_input = read_digit(image, model)
    return {str(d): p for d, p in enumerate(probabilities)}, network_view(network_input)


def read_drawing(value, model=None):
    """The sketchpad's handler: (label value, preview), or (None, None) to clear the answer when the
    canvas is empty, or holds only a trace too faint to count."""
    ink = ink_of_drawing(value)
    if ink is None:
        return None, None
    try:
        return answer(ink, model)
    except ImageError:
        return None, None


def read_file(path, model=None):
    """The upload's and the API's handler: a file predict.py cannot read becomes the same sentence as
    predict.py prints, shown as an error message."""
    if path is None:
        return None, None
    try:
        return answer(path, model)
    except ImageError as e:
        raise gr.Error(f"{os.path.basename(path)}: {e}", print_exception=False) from None


def build(checkpoint=DEFAULT_WEIGHTS):
    """The Blocks app; raises CheckpointError for weights that cannot be read."""
    model = load_model(checkpoint)

    with gr.Blocks(title="S5 MNIST: draw a digit", analytics_enabled=False) as demo:
        gr.Markdown("# Draw a digit\nThe network reads each stroke as MNIST digits were made: cropped to the ink, "
                    "fitted into 20x20 and centred in 28x28. The right-hand picture is exactly what it reads.")
        with gr.Tab("Draw"):
            with gr.Row():
                sketch = gr.Sketchpad(label="Draw one digit", canvas_size=(280, 280), fixed_canvas=True,
                                      brush=gr.Brush(default_size=20, colors=["#000000"], color_mode="fixed"),
                                      eraser=gr.Eraser(default_size=24), layers=False, transforms=(), type="numpy",
                                      image_mode="RGBA", elem_id="sketch")
                with gr.Column():
                    label = gr.Label(num_top_classes=3, label="The network says", elem_id="sketch-label")
                    preview = gr.Image(label="What the network reads (28x28)", type="numpy", image_mode="L",
                                       interactive=False, elem_id="sketch-preview")
            sketch.change(functools.partial(read_drawing, model=model), sketch, [label, preview], api_name=False,
                          show_progress="hidden")
        with gr.Tab("Upload"):
            with gr.Row():
                upload = gr.File(label="An image file showing one digit", type="filepath", elem_id="upload")
                with gr.Column():
                    upload_label = gr.Label(num_top_classes=3, label="The network says")
                    upload_preview = gr.Image(label="What the network reads (28x28)", type="numpy", image_mode="L",
                                              interactive=False)
            upload.change(functools.partial(read_file, model=model), upload, [upload_label, upload_preview],
                          api_name="predict")
            sketch.clear(None, js=PICK_BRUSH)
        demo.load(None, js=PICK_BRUSH)
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=DEFAULT_WEIGHTS, help="weights to use (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        demo = build(args.checkpoint)
    except CheckpointError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 1
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"S5 digit demo on http://127.0.0.1:{port} (Ctrl+C stops it)", flush=True)
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, ssr_mode=False, theme=THEME,
                footer_links=["api"], quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
