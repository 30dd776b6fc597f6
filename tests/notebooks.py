"""What a run of S5.ipynb printed (through papermill: the notebook tests and the quick look's)."""
import re

FINAL = re.compile(r"(\d+) epochs in \d+ s; final test accuracy (\d+\.\d+)%")
BAR = re.compile(r"^Train: Loss=\d+\.\d{4} Batch_id=\d+ Accuracy=\d+\.\d\d: 100%\|.*\|", re.M)


def outputs_text(notebook):
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def outputs_of(notebook, stream):
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == stream]


def check_executed(executed, fast, epochs):
    """What every headless run must show: its settings, the table, the epochs, the pictures, and one final
    progress line per epoch, with no carriage-return updates."""
    text = outputs_text(executed)
    assert f"fast path: {fast}" in text, "the settings line"
    assert f"Epoch {epochs}" in text, f"the last epoch, {epochs}"
    assert "Total params: 593,200" in text, "torchsummary's table"
    assert text.count("Adjusting learning rate of group 0 to 1.0000e-02.") == epochs + 1
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 6  # samples; losses; mistakes; confusion matrix; feature maps; attributions of the mistakes
    assert "conv4  conv           256x8x8            14x14    2x2   295,168" in text  # the receptive-field table
    # the next assignment's budget, checked at the end: Net's 593,200 parameters are far over it
    assert "parameters       falls short  593,200 (budget: fewer than 8,000)" in text
    assert "99.4% or more in each of the last 3 epochs of every seed" in text
    progress = "".join(o["text"] for o in outputs_of(executed, "stderr"))
    assert "\r" not in progress
    assert len(BAR.findall(progress)) == epochs, "one final progress line per epoch"
    assert progress.count("100%|") == epochs, "no bar shown twice"
    return FINAL.search(text).groups()
