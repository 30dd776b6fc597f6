"""Digit images as users hand them in to predict.py, the demo and the page: good ones, and files that only claim
to be images."""
import struct
import zlib

from PIL import Image


def user_image(digit, rng, size, mode):
    """An MNIST digit re-drawn as a user would hand it in: dark ink on light paper, larger, off-centre."""
    ink = Image.fromarray(255 - digit.numpy()).resize((size, size), Image.BILINEAR)
    canvas = Image.new("L", (int(size * 1.8), int(size * 1.5)), 255)
    canvas.paste(ink, (int(rng.integers(0, canvas.width - size)), int(rng.integers(0, canvas.height - size))))
    return canvas.convert("RGB") if mode != "L" else canvas


def png_header_only(path, width, height):
    """A tiny PNG file that claims a huge size: decoding it would need width x height pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
