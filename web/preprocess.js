// A drawing read the way predict.preprocess reads an image, the way MNIST was made: grey, white ink on black,
// cropped to the ink, fitted into 20x20 with PyTorch's antialiased bilinear resize, centre of mass at the
// centre of 28x28. Each step follows predict.py's line for line; the tests compare the two. The normalization
// is inside the network's file (export.py), so the page hands it plain grey levels.
const MIN_CONTRAST = 0.1; // ink must differ from the paper by a tenth of the grey range
const INK_THRESHOLD = 0.2; // fraction of the strongest ink that counts when cropping

export class BlankImage extends Error {}

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

// PIL's convert("L") of opaque RGB pixels, in its fixed-point arithmetic, then scaled to [0, 1].
function greyOf({ data, width, height }) {
  const grey = new Float64Array(width * height);
  for (let i = 0; i < grey.length; i++) {
    const [r, g, b] = [data[4 * i], data[4 * i + 1], data[4 * i + 2]];
    grey[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255;
  }
  return grey;
}

// torch.median: the lower of the two middle values.
function lowerMedian(values) {
  const sorted = Float64Array.from(values).sort();
  return sorted[(sorted.length - 1) >> 1];
}

// One output pixel's input range and weights in PyTorch's antialiased bilinear resize (as PIL's): a
// triangle filter widened by the scale when shrinking, normalized to sum to one.
function resizeWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? 1 / scale : 1;
  const taps = [];
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const stop = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = [];
    let total = 0;
    for (let j = start; j < stop; j++) {
      const w = Math.max(0, 1 - Math.abs((j - center + 0.5) * invscale));
      weights.push(w);
      total += w;
    }
    taps.push({ start, weights: weights.map((w) => (total ? w / total : 0)) });
  }
  return taps;
}

function resize(image, height, width, outHeight, outWidth) {
  const across = resizeWeights(width, outWidth);
  const down = resizeWeights(height, outHeight);
  const rows = new Float64Array(height * outWidth);
  for (let y = 0; y < height; y++) {
    across.forEach(({ start, weights }, x) => {
      let sum = 0;
      weights.forEach((w, k) => { sum += w * image[y * width + start + k]; });
      rows[y * outWidth + x] = sum;
    });
  }
  const out = new Float64Array(outHeight * outWidth);
  down.forEach(({ start, weights }, y) => {
    for (let x = 0; x < outWidth; x++) {
      let sum = 0;
      weights.forEach((w, k) => { sum += w * rows[(start + k) * outWidth + x]; });
      out[y * outWidth + x] = Math.min(Math.max(sum, 0), 1);
    }
  });
  return out;
}

// ImageData (opaque) -> { input: Float32Array(784), grey levels in [0, 1] row by row; picture: the same as
// 0-255 }. Throws BlankImage when no ink differs enough from the paper.
export function preprocess(imageData) {
  const { width, height } = imageData;
  let grey = greyOf(imageData);
  const border = [];
  for (let x = 0; x < width; x++) border.push(grey[x], grey[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(grey[y * width], grey[y * width + width - 1]);
  let paper = lowerMedian(border);
  if (paper > 0.5) { // dark ink on light paper: MNIST is white ink on black
    grey = grey.map((v) => 1 - v);
    paper = lowerMedian(border.map((v) => 1 - v));
  }
  const ink = grey.map((v) => Math.max(v - paper, 0));
  const strongest = ink.reduce((a, b) => Math.max(a, b), 0);
  if (strongest < MIN_CONTRAST) {
    throw new BlankImage("blank image: no ink found (the digit must be darker or lighter than the paper)");
  }
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] / strongest > INK_THRESHOLD) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  const [cropHeight, cropWidth] = [bottom - top + 1, right - left + 1];
  const crop = new Float64Array(cropHeight * cropWidth);
  for (let y = 0; y < cropHeight; y++) {
    for (let x = 0; x < cropWidth; x++) crop[y * cropWidth + x] = ink[(top + y) * width + left + x] / strongest;
  }
  const scale = 20.0 / Math.max(cropHeight, cropWidth);
  const digitHeight = Math.max(1, roundHalfEven(cropHeight * scale));
  const digitWidth = Math.max(1, roundHalfEven(cropWidth * scale));
  const digit = resize(crop, cropHeight, cropWidth, digitHeight, digitWidth);
  // MNIST's digits have their centre of mass at pixel (14, 14)
  let mass = 0, massY = 0, massX = 0;
  for (let y = 0; y < digitHeight; y++) {
    for (let x = 0; x < digitWidth; x++) {
      const v = digit[y * digitWidth + x];
      mass += v; massY += v * y; massX += v * x;
    }
  }
  const offsetY = Math.min(Math.max(roundHalfEven(14 - massY / mass), 0), 28 - digitHeight);
  const offsetX = Math.min(Math.max(roundHalfEven(14 - massX / mass), 0), 28 - digitWidth);
  const canvas = new Float64Array(28 * 28);
  for (let y = 0; y < digitHeight; y++) {
    for (let x = 0; x < digitWidth; x++) canvas[(offsetY + y) * 28 + offsetX + x] = digit[y * digitWidth + x];
  }
  return {
    input: Float32Array.from(canvas),
    picture: Uint8ClampedArray.from(canvas, (v) => Math.round(v * 255)),
  };
}
