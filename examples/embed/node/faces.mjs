#!/usr/bin/env node
// Generate images with an img2img noise-to-image model (inputs "z" and, when class-conditional,
// "label") on onnxruntime-node, from latent vectors given in a JSON file, into one grid image.

import { readFileSync } from 'node:fs';

import * as ort from 'onnxruntime-node';

import { ModelError } from './contract.mjs';
import { UsageError, parseCommandLine, positiveInteger, runMain, shipped } from './cli.mjs';
import { openModel } from './model.mjs';
import { ImageError, firstLine, outputFormat, quantizeSample, writeImage } from './pixels.mjs';

// As the Python runtime (img2img.runtime.faces): white pixels between and around grid cells,
// latents per model call, and the most images one run makes.
const GRID_PADDING = 2;
const BATCH_SIZE = 64;
const MAX_SAMPLES = 10_000;

const USAGE = `usage: node faces.mjs OUTPUT --z LATENTS.json [--label NAME] [--columns N]
                     [--model MODEL.onnx] [--threads N]

Run a noise-to-image img2img model on the latent vectors in LATENTS.json and write the images
as one grid to OUTPUT (.png, .jpg or .webp): ceil(sqrt(N)) columns unless --columns says
otherwise, ${GRID_PADDING} white pixels between and around the cells, the layout of
\`img2img faces generate -o grid.png\`.

LATENTS.json is an array of N latent vectors, each an array of latent_dim numbers (the model's
metadata says how many), or {"z": [...], "labels": [...]} with one label (a class name or
its index) per vector. The Python runtime draws z from numpy's default_rng(seed), which
JavaScript cannot reproduce, so the latents are given rather than seeded.

  --z PATH       the latent vectors (required)
  --label NAME   a class-conditional model: this class for every image
  --columns N    grid columns (default: square-ish)
  --model PATH   the .onnx file (default: weights/faces-emoji.onnx of this repository)
  --threads N    onnxruntime intra-op threads (default: all cores)
  -h, --help     show this message
`;

await runMain('faces', async () => {
  const { values, positionals } = parseCommandLine(USAGE, ['OUTPUT'], {
    z: { type: 'string' },
    label: { type: 'string' },
    columns: { type: 'string' },
    model: { type: 'string', short: 'm' },
  });
  const [output] = positionals;
  if (values.z === undefined) throw new UsageError('--z LATENTS.json is required');
  try {
    outputFormat(output);
  } catch (error) {
    throw new UsageError(error.message);
  }
  const model = await openModel(values.model ?? shipped('faces-emoji.onnx'), { threads: values.threads });
  const { info } = model;
  if (!info.generates || !info.latent_dim) {
    throw new ModelError(`${info.name} is a ${info.task || 'image-to-image'} model, not a noise-to-image one; use upscale.mjs`);
  }
  const { z, count, labels: given } = readLatents(values.z, info.latent_dim);
  const labels = chooseLabels(info, given, values.label, count);
  const columns = values.columns === undefined ? Math.ceil(Math.sqrt(count)) : positiveInteger(values.columns, '--columns', count);

  const images = [];
  let side = 0;
  for (let start = 0; start < count; start += BATCH_SIZE) {
    const size = Math.min(BATCH_SIZE, count - start);
    const feeds = {
      [model.inputNames[0]]: new ort.Tensor('float32', z.subarray(start * info.latent_dim, (start + size) * info.latent_dim), [size, info.latent_dim]),
    };
    if (labels) feeds[model.inputNames[1]] = new ort.Tensor('int64', labels.subarray(start, start + size), [size]);
    let result;
    try {
      result = (await model.session.run(feeds, [model.outputName]))[model.outputName];
    } catch (error) {
      throw new ModelError(`running ${info.name} failed (${firstLine(error)})`);
    }
    const [n, channels, height, width] = result.dims;
    if (result.dims.length !== 4 || n !== size || channels !== 3 || height !== width) {
      throw new ModelError(`${info.name} returned an output of shape [${result.dims}]; expected [${size}, 3, R, R]`);
    }
    side = height;
    for (let k = 0; k < size; k++) images.push(result.data.subarray(k * 3 * side * side, (k + 1) * 3 * side * side));
  }

  const rows = Math.ceil(count / columns);
  const gridWidth = columns * (side + GRID_PADDING) + GRID_PADDING;
  const gridHeight = rows * (side + GRID_PADDING) + GRID_PADDING;
  const grid = new Uint8Array(gridWidth * gridHeight * 3).fill(255);
  const plane = side * side;
  images.forEach((image, index) => {
    const top = GRID_PADDING + Math.floor(index / columns) * (side + GRID_PADDING);
    const left = GRID_PADDING + (index % columns) * (side + GRID_PADDING);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const at = ((top + y) * gridWidth + left + x) * 3;
        for (let c = 0; c < 3; c++) grid[at + c] = quantizeSample(image[c * plane + y * side + x], 255);
      }
    }
  });
  await writeImage(output, grid, gridWidth, gridHeight, 3);
  console.log(`${output}: ${count} image(s) of ${side}x${side} from ${info.name}, in ${rows} row(s) of ${columns}`);
});

/** The latents file as { z: Float32Array (N * latentDim), count: N, labels: array or null }. */
function readLatents(path, latentDim) {
  let parsed;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const why = error instanceof SyntaxError ? 'not valid JSON' : error.code || firstLine(error);
    throw new ImageError(`cannot read latents from ${path} (${why})`);
  }
  let rows = parsed;
  let labels = null;
  if (parsed && !Array.isArray(parsed) && typeof parsed === 'object') {
    rows = parsed.z;
    labels = parsed.labels ?? null;
  }
  if (!Array.isArray(rows) || rows.length < 1 || rows.length > MAX_SAMPLES) {
    throw new ImageError(`${path} must hold 1 to ${MAX_SAMPLES} latent vectors (an array of arrays, or {"z": [...]})`);
  }
  const z = new Float32Array(rows.length * latentDim);
  rows.forEach((row, index) => {
    if (!Array.isArray(row) || row.length !== latentDim || !row.every((value) => typeof value === 'number' && Number.isFinite(value))) {
      throw new ImageError(`${path}: latent ${index} must be an array of ${latentDim} finite numbers (the model's latent_dim)`);
    }
    z.set(row, index * latentDim);
  });
  if (labels !== null && (!Array.isArray(labels) || labels.length !== rows.length)) {
    throw new ImageError(`${path}: "labels" must be an array with one label per latent (${rows.length})`);
  }
  return { z, count: rows.length, labels };
}

/** The int64 labels to feed (BigInt64Array), or null for an unconditional model. */
function chooseLabels(info, given, name, count) {
  const known = info.labels;
  if (!known.length) {
    if (given !== null || name !== undefined) throw new UsageError(`${info.name} is unconditional: it takes no labels`);
    return null;
  }
  if (given !== null && name !== undefined) throw new UsageError('labels come from --label or from the latents file, not both');
  if (given === null && name === undefined) {
    throw new UsageError(`${info.name} is class-conditional: pass --label NAME (one of ${known.join(', ')}) or "labels" in the latents file`);
  }
  const index = (label) => {
    const found = Number.isInteger(label) ? label : known.indexOf(label);
    if (!(found >= 0 && found < known.length)) {
      throw new UsageError(`unknown label ${JSON.stringify(label)}; ${info.name} knows ${known.join(', ')} (or 0 to ${known.length - 1})`);
    }
    return BigInt(found);
  };
  return BigInt64Array.from(given ?? Array(count).fill(name), index);
}
