// The page: draw on #pad with a mouse, a pen or a finger; when a stroke ends, the drawing is read as predict.py
// reads an image (preprocess.js), the network runs here with ONNX Runtime Web on one thread, and the page shows
// the answer, the ten probabilities and the 28x28 picture the network read. A visitor's own network, a file
// written by export.py, can be picked or dropped on the page. window.s5.read(imageData) reads for scripts and tests.
import { BlankImage, preprocess } from "./preprocess.js";

const RUNTIME_FILES = new URL("node_modules/onnxruntime-web/dist/", import.meta.url).href; // npm ci puts it here
const MODEL = "s5_net.onnx";
const BRUSH = 20; // pixels on the 280x280 pad: a stroke about as thick, relative to the digit, as MNIST's

const pad = document.getElementById("pad");
const pen = pad.getContext("2d", { willReadFrequently: true });
const status = document.getElementById("status");
const answer = document.getElementById("answer");
const networkName = document.getElementById("network");
const bars = [...document.querySelectorAll("#probabilities tr")];
const picture = document.getElementById("input").getContext("2d");

function say(sentence) {
  status.textContent = sentence;
}

class Refused extends Error {} // a file that is not a digit classifier: the page keeps the network it has

async function loadRuntime() {
  if (typeof WebAssembly !== "object") {
    throw new Error("This browser cannot run WebAssembly, which the network needs here: open the page in a "
      + "current Chrome, Edge, Firefox or Safari, or with WebAssembly switched on.");
  }
  let ort;
  try {
    ort = await import(`${RUNTIME_FILES}ort.wasm.min.mjs`);
  } catch {
    throw new Error("ONNX Runtime Web is missing from this folder: run `npm ci` in it, then reload the page.");
  }
  ort.env.wasm.numThreads = 1; // several threads need cross-origin isolation, which a plain file server lacks
  ort.env.wasm.wasmPaths = RUNTIME_FILES;
  return ort;
}

const runtime = loadRuntime();

// An ONNX file as a network the page can use: it must take a (N, 1, 28, 28) batch of grey levels in [0, 1]
// and give 10 scores per image (log-probabilities or plain scores: a softmax makes either probabilities).
async function networkOf(bytes, name) {
  const ort = await runtime;
  let runner;
  try {
    runner = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  } catch {
    throw new Refused(`${name} is not an ONNX file the page can run: write one with python export.py.`);
  }
  const [input] = runner.inputNames;
  const [output] = runner.outputNames;
  let scores;
  try {
    scores = (await runner.run({ [input]: new ort.Tensor("float32", new Float32Array(784), [1, 1, 28, 28]) }))[output];
  } catch {
    throw new Refused(`${name} does not take a batch of 28x28 digits, shape (N, 1, 28, 28): it is not a digit `
      + "classifier that the page can use.");
  }
  if (scores.data.length !== 10) {
    throw new Refused(`${name} gives ${scores.data.length} scores for a digit, not 10: it is not a digit classifier `
      + "that the page can use.");
  }
  return { ort, runner, input, output, name };
}

async function loadShipped() {
  const response = await fetch(MODEL);
  if (!response.ok) {
    throw new Error(`The network's file ${MODEL} is missing from this folder (HTTP ${response.status}): write it `
      + "with `python export.py --output web/s5_net.onnx`, then reload the page.");
  }
  return networkOf(new Uint8Array(await response.arrayBuffer()), MODEL);
}

let network = loadShipped();

async function read(imageData) {
  const { ort, runner, input: inputName, output } = await network;
  const { input, picture: grey } = preprocess(imageData);
  const scores = Array.from((await runner.run({ [inputName]: new ort.Tensor("float32", input, [1, 1, 28, 28]) }))[output].data);
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const total = exps.reduce((a, b) => a + b, 0);
  const probabilities = exps.map((e) => e / total);
  const digit = probabilities.indexOf(Math.max(...probabilities));
  return { digit, probabilities, picture: Array.from(grey) };
}

function show(result) {
  answer.textContent = result ? String(result.digit) : "";
  bars.forEach((row, d) => {
    const p = result ? result.probabilities[d] : 0;
    row.querySelector("meter").value = p;
    row.querySelector("output").textContent = result ? `${(100 * p).toFixed(1)}%` : "";
    row.classList.toggle("best", Boolean(result) && d === result.digit);
  });
  const pixels = picture.createImageData(28, 28);
  (result ? result.picture : new Array(784).fill(0)).forEach((v, i) => {
    pixels.data.set([v, v, v, 255], 4 * i);
  });
  picture.putImageData(pixels, 0, 0);
}

async function readPad() {
  try {
    show(await read(pen.getImageData(0, 0, pad.width, pad.height)));
    say("Draw another digit, or clear the pad.");
  } catch (e) {
    show(null);
    if (!(e instanceof BlankImage)) throw e;
    say("Draw one digit on the pad.");
  }
}

function clear() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  show(null);
}

async function useFile(file) {
  const previous = network;
  say(`Loading ${file.name}...`);
  try {
    const chosen = await networkOf(new Uint8Array(await file.arrayBuffer()), file.name);
    network = Promise.resolve(chosen);
    networkName.textContent = file.name;
    clear();
    say(`${file.name} is the network now: draw one digit on the pad.`);
  } catch (e) {
    network = previous;
    say(e.message);
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

// Pointer events are the mouse, the pen and the finger alike; touch-action: none keeps a finger's stroke
// from scrolling the page.
let drawing = false;
pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  pen.beginPath();
  pen.moveTo(...point(event));
  pen.lineTo(...point(event)); // a tap leaves a dot
  pen.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.stroke();
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => {
    if (!drawing) return;
    drawing = false;
    readPad().catch((e) => say(e.message));
  });
}
document.getElementById("clear").addEventListener("click", () => {
  clear();
  say("Draw one digit on the pad.");
});
document.getElementById("own").addEventListener("change", (event) => {
  if (event.target.files.length) useFile(event.target.files[0]);
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer.files.length) useFile(event.dataTransfer.files[0]);
});

pen.strokeStyle = "#000";
pen.lineWidth = BRUSH;
pen.lineCap = "round";
pen.lineJoin = "round";
clear();
window.s5 = { read };
network.then(() => say("Draw one digit on the pad."), (e) => {
  pad.classList.add("off");
  say(e.message);
});
