"""The browser the page's, the demo's and JupyterLab's tests drive, and digits drawn as strokes in it."""
import numpy as np

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download fails here


STROKES = {  # digits as pointer strokes, in fractions of a drawing pad, for the browser tests
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.4, 0.85)]],
    "0": [[(0.5 + 0.22 * np.sin(t), 0.5 - 0.33 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 13)]],
}
