#!/usr/bin/env bash
# Lays out the draw-a-digit demo as a Hugging Face Space (Gradio SDK) in the folder DEST: app.py, the modules it
# imports (the library in s5/), the shipped weights, and this folder's README.md (the Space's settings) and requirements.txt.
#   bash space/build.sh DEST        # DEST: a new folder, or a clone of your Space's git repository
# A Space then starts it as `python app.py` with GRADIO_SERVER_NAME=0.0.0.0 (docs/sharing.md).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash space/build.sh DEST (a new folder, or a clone of your Space's git repository)" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
cp "$root"/{app.py,model.py,predict.py,s5_net.pt} "$1"/
rm -rf "$1/s5" && mkdir "$1/s5" && cp "$root"/s5/*.py "$1/s5/"  # the library, without this machine's caches
cp "$root"/space/{README.md,requirements.txt} "$1"/
echo "The Space's files are in $1: commit and push them to your Space."
