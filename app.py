"""Draw a digit, see what the network sees: a local web demo of a trained network (the shipped Net by default).

    pip install -r requirements/app.txt
    python app.py                          # http://127.0.0.1:7860 (GRADIO_SERVER_NAME/PORT: another address)
    python app.py --checkpoint my_s5_net.pt   # other weights than the shipped s5_net.pt
    python app.py --checkpoint my_small.pt   # another network's run: its record names the class

Draw with the mouse or a finger: each finished stroke is read the way predict.py reads an image file
(cropped to the ink, fitted into 20x20, centred by centre of mass in 28x28, as MNIST was made), and the
page shows the three likeliest digits beside the 28x28 image the network actually read. Below, the Inside
view follows: each convolution's most active feature maps (click a unit to see the input pixels it reads,
its receptive field) and which pixels raised the score of the answer, or of any digit you pick (explain.py).
The Upload tab and the API endpoints `predict` and `explain` do the same for an image file. Runs offline: no
analytics, no share link, no fonts or scripts from other hosts. Exit status 2 for a network, weights or port that
cannot be used, said in one sentence before the server starts."""
import argparse
import functools
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw

from s5 import explain
from s5 import networks
from s5 import pictures
from predict import ImageError, preprocess, read_digit

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
    """The ink of a sketchpad value ({'background', 'layers', 'composite'}) as an array; None when the canvas
    holds nothing.

    The ink is the drawn layers' opacity (their alpha channel), so the brush colour, a dark theme and a
    transparent or coloured background cannot turn the digit into its negative. A value with no layers (an
    image pasted as the background) is read from its composite, as predict.py reads any image."""
    if value is None:
        return None
    layers = [np.asarray(layer)[..., 3] for layer in value.get("layers") or [] if layer is not None]
    return np.max(layers, axis=0) if layers else value.get("composite")


def answer(image, model):
    """(label value, preview, network input) for anything predict.py reads: {digit: probability}, the
    network's view, and the (1, 1, 28, 28) tensor it read, which the Inside view then looks into."""
    digit, probabilities, network_input = read_digit(image, model)
    return {str(d): p for d, p in enumerate(probabilities)}, pictures.input_picture(network_input), network_input


def read_drawing(value, model=None):
    """The sketchpad's handler: (label value, preview, network input), or Nones to clear the answer when
    the canvas is empty, or holds only a trace too faint to count."""
    ink = ink_of_drawing(value)
    if ink is None:
        return None, None, None
    try:
        return answer(ink, model)
    except ImageError:  # blank: cleared, erased, or too faint
        return None, None, None


def read_file(path, model=None):
    """The upload's and the API's handler: a file predict.py cannot read becomes the same sentence as
    predict.py prints, shown as an error message."""
    if path is None:
        return None, None
    try:
        return answer(path, model)[:2]
    except ImageError as e:
        raise gr.Error(f"{os.path.basename(path)}: {e}", print_exception=False) from None


DIGITS = [str(d) for d in range(10)]


def convolutions(model):
    """The names of the model's convolutions, in forward order: the Inside view shows one grid each."""
    return [row["layer"] for row in explain.receptive_fields(model) if row["kind"] == "conv"]


def attribution_caption(digit):
    return f"**Attribution for the digit {digit}**: red pixels raised its score, blue ones lowered it."


def inside_view(network_input, model):
    """The Inside view of one network input (the sample 7 when there is none, as on an empty pad): a grid for each
    convolution, the input, the attribution for the network's answer and its caption, that digit, and the state
    that clicks and picks read."""
    if network_input is None:
        network_input = sample_input()
    layers = convolutions(model)
    with torch.no_grad():
        maps = explain.activations(model, network_input, as_read=True)
        digit = int(model(network_input).argmax())
    state = {"input": network_input, "maps": [maps[layer][0] for layer in layers]}
    attribution = explain.attribution(model, network_input, [digit])[0]
    return (*[pictures.feature_map_grid(layer_maps)[0] for layer_maps in state["maps"]],
            pictures.input_picture(network_input), pictures.attribution_picture(network_input, attribution),
            attribution_caption(digit), str(digit), state)


def sample_input():
    """A 7 drawn with two strokes, read as a drawing is: what the Inside view shows before anything is drawn."""
    page = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(page).line([(70, 56), (210, 56), (112, 238)], fill=0, width=20, joint="curve")
    return preprocess(page)


def inside_of_file(path, model=None):
    """The Inside view of an image file; the API endpoint `explain` returns its pictures."""
    try:
        return inside_view(None if path is None else preprocess(path), model)
    except ImageError as e:
        raise gr.Error(f"{os.path.basename(path)}: {e}", print_exception=False) from None


def attribution_for(state, digit, model=None):
    """Another digit picked: its attribution over the same input, the caption naming it, and the digit, handed
    back so that the page keeps the pick when other pictures change (a Radio otherwise shows the last digit the
    server set)."""
    if not state or digit is None:
        return None, "", digit
    network_input = state["input"]
    attribution = explain.attribution(model, network_input, [int(digit)])[0]
    return pictures.attribution_picture(network_input, attribution), attribution_caption(digit), digit


def receptive_field_of(state, index, fields, layer, xy):
    """A click at pixel `xy` of convolution number `index`'s grid: the grids with that unit marked on its map, the
    input with the unit's receptive field outlined (the part inside the image: padding is not input), and a
    sentence saying which pixels the unit reads."""
    if not state:
        return (None,) * len(fields) + (None, "")
    unit = pictures.unit_at(*xy, *state["maps"][index].shape[-2:])
    grids = [pictures.feature_map_grid(layer_maps, unit=unit if i == index else None)
             for i, layer_maps in enumerate(state["maps"])]
    if unit is None:  # the channel numbers or the colour scale under the maps
        return (*[grid for grid, _ in grids], pictures.input_picture(state["input"]), "")
    tile, row, col = unit
    top, left, bottom, right = box = explain.receptive_field_box(fields[layer], row, col)
    return (*[grid for grid, _ in grids], pictures.input_picture(state["input"], box),
            f"The red box: the {bottom - top + 1}x{right - left + 1} input pixels (rows {top}-{bottom}, columns "
            f"{left}-{right}) that {layer}'s channel {grids[index][1][tile]}, unit (row {row}, column {col}) reads.")


# The page layout and the launch are tested in a browser and in a server process, which mutation testing
# cannot follow; it mutates the handlers above.
def make_demo(model):  # pragma: no mutate block
    """The Blocks app around `model` (predict.load_model gives the shipped one)."""
    layers = convolutions(model)

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
                    preview = gr.Image(label="What the network reads (28x28)", type="numpy", interactive=False,
                                       format="png", elem_id="sketch-preview")
            drawn = gr.State()  # the network input of the drawing: the Inside view needs no second upload
            done = sketch.change(functools.partial(read_drawing, model=model), sketch, [label, preview, drawn],
                                 api_name=False, show_progress="hidden")
        with gr.Tab("Upload"):
            with gr.Row():
                upload = gr.File(label="An image file showing one digit", type="filepath", elem_id="upload")
                with gr.Column():
                    upload_label = gr.Label(num_top_classes=3, label="The network says", elem_id="upload-label")
                    upload_preview = gr.Image(label="What the network reads (28x28)", type="numpy",
                                              interactive=False, format="png")
            upload_done = upload.change(functools.partial(read_file, model=model), upload,
                                        [upload_label, upload_preview], api_name="predict")
            sketch.clear(None, js=PICK_BRUSH)
        with gr.Column(elem_id="inside"):
            gr.Markdown("## Inside\nWhat each convolution computes from the digit (a sample 7 while the pad is empty): its "
                        "eight most active feature maps after their ReLU, on the colour scale beneath them. Click a "
                        "unit of a map: it is marked, and the input pixels it reads, its receptive field, are outlined "
                        "on the input below. The attribution shows which pixels raised (red) or lowered (blue) the "
                        "score of the answer; pick another digit to ask why not that one.")
            fields = {row["layer"]: row for row in explain.receptive_fields(model)}
            grids = []
            for layer in layers:  # the caption above the picture: a label would cover its first maps
                height, width = fields[layer]["shape"][1:]
                gr.Markdown(f"**{layer}**: {fields[layer]['shape'][0]} maps of {height}x{width}; each unit sees "
                            f"{explain.field_text(fields[layer]['rf'])} input pixels")
                grids.append(gr.Image(show_label=False, type="numpy", interactive=False, format="png",
                                      elem_id=f"inside-{len(grids) + 1}"))
            with gr.Row():
                with gr.Column():
                    field_input = gr.Image(label="The input, with the clicked unit's receptive field", type="numpy",
                                           interactive=False, format="png", elem_id="inside-input")
                    field_text = gr.Markdown("Click a unit of a feature map above.", elem_id="inside-field")
                with gr.Column():
                    caption = gr.Markdown(elem_id="inside-caption")
                    attribution = gr.Image(label="Attribution (integrated gradients)", type="numpy",
                                           interactive=False, format="png", elem_id="inside-attribution")
                    digit = gr.Radio(DIGITS, label="Attribution for digit", elem_id="inside-digit")
            state = gr.State()
        outputs = [*grids, field_input, attribution, caption, digit, state]
        done.then(functools.partial(inside_view, model=model), drawn, outputs, api_name=False, show_progress="hidden")
        upload_done.then(functools.partial(inside_of_file, model=model), upload, outputs, api_name="explain")
        digit.input(functools.partial(attribution_for, model=model), [state, digit], [attribution, caption, digit],
                    api_name=False)
        for index, (layer, grid) in enumerate(zip(layers, grids)):
            def clicked(state, evt: gr.SelectData, index=index, layer=layer):
                return receptive_field_of(state, index, {name: fields[name] for name in layers}, layer, evt.index)
            grid.select(clicked, state, [*grids, field_input, field_text], api_name=False)
        demo.load(lambda: inside_view(None, model), None, outputs, api_name=False, show_progress="hidden")
        demo.load(None, js=PICK_BRUSH)
    return demo


def main(argv=None):  # pragma: no mutate block
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _, model = networks.from_command_line(parser, argv, "app.py")
    if model is None:
        return 2
    demo = make_demo(model)
    # Gradio's own variables, which Hugging Face Spaces and Docker images set to 0.0.0.0 and 7860; a local
    # demo stays on the loopback address unless asked.
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = os.environ.get("GRADIO_SERVER_PORT", "7860")
    if not port.isdigit():
        print(f"app.py: GRADIO_SERVER_PORT={port!r} is not a port number: set it to one, such as 7860, or unset it",
              file=sys.stderr)
        return 2
    print(f"S5 digit demo on http://{host}:{port} (Ctrl+C stops it)", flush=True)
    demo.launch(server_name=host, server_port=int(port), share=False, ssr_mode=False, theme=THEME,
                footer_links=["api"], quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
