// Run the shipped img2img models in the browser with onnxruntime-web: no server-side work.
//
// Query parameters (all optional): model=NAME picks the model, backend=auto|wasm|webgpu the
// execution provider, models=URL where the .onnx files are (default ../../../weights/, the
// repository's weights folder when the repository root is served).
//
// For scripts and tests: `await window.img2imgRun(modelName)` runs the chosen photo and resolves
// once the result is drawn; document.body.dataset.state is "done" (or "error") afterwards and
// document.body.dataset.runs counts finished runs.

import * as ort from './node_modules/onnxruntime-web/dist/ort.min.mjs';
import { readMetadataProps } from './onnx-metadata.js';
import { imageModelInfo, paddedSize, quantizeCrop, toPaddedNCHW } from './contract.js';

// The shipped image-to-image models the page runs (weights/manifest.json has them all; the
// others take a mask, generate from noise or translate emoji).
const MODELS = [
  { name: 'superres-x4', label: 'Upscale x4 (superres-x4)' },
  { name: 'superres-x2', label: 'Upscale x2 (superres-x2)' },
  { name: 'superres-x4-real', label: 'Upscale x4, real photos: noise, blur, JPEG (superres-x4-real)' },
  { name: 'style-starry-night', label: 'Style: The Starry Night (style-starry-night)' },
  { name: 'style-the-kiss', label: 'Style: The Kiss (style-the-kiss)' },
];

// Everything onnxruntime-web loads at run time (its .wasm and the .mjs glue) comes from the
// installed package beside this page, never from a CDN.
ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
// WASM threads need SharedArrayBuffer, which browsers only give a page served with the
// Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers (python -m http.server
// sends neither): one thread unless the page is cross-origin isolated.
ort.env.wasm.numThreads = globalThis.crossOriginIsolated
  ? Math.min(4, navigator.hardwareConcurrency || 1)
  : 1;

const $ = (id) => document.getElementById(id);
const elements = {
  model: $('model'),
  backend: $('backend'),
  modelsUrl: $('models-url'),
  drop: $('drop'),
  dropText: $('drop-text'),
  file: $('file'),
  run: $('run'),
  download: $('download'),
  status: $('status'),
  timing: $('timing'),
  info: $('info'),
  source: $('source'),
  sourceSize: $('source-size'),
  result: $('result'),
  resultSize: $('result-size'),
};

let photo = null; // { name, width, height, rgba }
let decoding = Promise.resolve();
let running = false;
const sessions = new Map(); // url + backend -> Promise<{ session, info, backend, loadMs }>
let webgpuAdapter; // undefined: not asked yet; null: none

function setState(state, message = '') {
  document.body.dataset.state = state;
  elements.status.textContent = message;
}

function updateRunButton() {
  elements.run.disabled = running || photo === null;
}

async function hasWebGPU() {
  if (webgpuAdapter === undefined) {
    try {
      webgpuAdapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
    } catch {
      webgpuAdapter = null;
    }
  }
  return webgpuAdapter !== null;
}

async function pickBackend(choice) {
  if (choice === 'wasm') return 'wasm';
  const available = await hasWebGPU();
  if (choice === 'webgpu' && !available) {
    throw new Error('this browser offers no WebGPU adapter; choose the WASM backend');
  }
  return available ? 'webgpu' : 'wasm';
}

function modelUrl(name) {
  const base = elements.modelsUrl.value.trim() || '../../../weights/';
  return new URL(`${name}.onnx`, new URL(base.endsWith('/') ? base : `${base}/`, document.baseURI)).href;
}

async function createSession(url, backend) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new Error(`could not fetch ${url} (${error.message})`);
  }
  if (!response.ok) {
    throw new Error(
      `could not fetch ${url}: HTTP ${response.status}; serve the repository root and open ` +
        '/examples/embed/web/, or point "Models from" at a folder holding the .onnx files',
    );
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const fileName = decodeURIComponent(new URL(url).pathname.split('/').pop());
  const info = imageModelInfo(readMetadataProps(bytes), fileName);
  if (info.precision !== 'fp32') throw new Error(`${fileName} is a ${info.precision} model; pick a float32 one`);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
  });
  if (session.inputNames.length !== 1 || session.outputNames.length !== 1) {
    throw new Error(
      `${fileName} has ${session.inputNames.length} inputs and ${session.outputNames.length} outputs; ` +
        'an image-to-image model has one of each',
    );
  }
  return { session, info, backend, loadMs: performance.now() - started };
}

async function loadModel(name, backendChoice) {
  const backend = await pickBackend(backendChoice);
  const url = modelUrl(name);
  const key = `${url}\n${backend}`;
  const cached = sessions.has(key);
  if (!cached) {
    const pending = createSession(url, backend);
    sessions.set(key, pending);
    // A failed load is not kept, so that the next Run tries again.
    pending.catch(() => sessions.delete(key));
  }
  return { ...(await sessions.get(key)), cached };
}

// The file's own pixels: no colour management (the Python runtime reads the stored values and
// only carries the colour profile along), no premultiplied alpha. EXIF orientation is applied,
// so that the photo is processed the way it is shown.
async function decodePhoto(file) {
  const bitmap = await createImageBitmap(file, {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
    imageOrientation: 'from-image',
  });
  const { width, height } = bitmap;
  const canvas = elements.source;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.clearRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  let transparent = false;
  for (let index = 3; index < rgba.length; index += 4) {
    if (rgba[index] !== 255) {
      transparent = true;
      break;
    }
  }
  return { name: file.name, width, height, rgba, transparent };
}

function choosePhoto(file) {
  if (!file) return;
  if (running) return;
  setState('decoding', `Reading ${file.name}…`);
  photo = null;
  updateRunButton();
  decoding = decodePhoto(file).then(
    (decoded) => {
      photo = decoded;
      elements.dropText.textContent = `${decoded.name} (${decoded.width}x${decoded.height}); drop another to replace it`;
      elements.sourceSize.textContent = `${decoded.width}x${decoded.height}`;
      setState(
        'ready',
        decoded.transparent ? 'The photo has transparent pixels: the result is opaque (transparency is dropped).' : '',
      );
      updateRunButton();
    },
    (error) => {
      setState('error', `${file.name} could not be decoded as an image (${error.message})`);
    },
  );
}

function suffix(info) {
  return info.task === 'superres' || (!info.style && info.scale > 1) ? `x${info.scale}` : info.name;
}

function stem(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

async function showDownload(info) {
  const blob = await new Promise((resolve) => elements.result.toBlob(resolve, 'image/png'));
  if (elements.download.href) URL.revokeObjectURL(elements.download.href);
  elements.download.href = URL.createObjectURL(blob);
  elements.download.download = `${stem(photo.name)}_${suffix(info)}.png`;
  elements.download.hidden = false;
}

/**
 * Run `modelName` (default: the selected one) on the chosen photo and draw the result.
 * @returns {Promise<{width: number, height: number, ms: number, runMs: number, loadMs: number,
 *   backend: string, threads: number|null}>} result size, milliseconds in all, running the model
 *   (with the padding, rounding and drawing around it) and loading it (0 when it was loaded
 *   already), the backend and its WASM thread count
 */
async function run(modelName = elements.model.value) {
  if (running) throw new Error('a run is in progress');
  running = true;
  updateRunButton();
  setState('running', 'Starting…');
  try {
    await decoding;
    if (photo === null) throw new Error('choose a photo first');
    if (elements.model.value !== modelName) elements.model.value = modelName;
    setState('running', `Loading ${modelName}…`);
    const started = performance.now();
    const model = await loadModel(modelName, elements.backend.value);
    const { session, info, backend } = model;
    const loadMs = model.cached ? 0 : performance.now() - started;

    if (info.background && photo.transparent) {
      // The Python runtime lays such pixels over the background first; the canvas the page
      // decodes into premultiplies alpha, so their colours could not be matched here.
      throw new Error(
        `${modelName} expects transparent pixels composited onto ${info.background}; ` +
          'give it an opaque image (flatten it first)',
      );
    }
    setState('running', `Running ${modelName} on ${backend}…`);
    // Let the status paint: a single-threaded WASM run holds the page until it ends.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const runStarted = performance.now();
    const { width, height, rgba } = photo;
    const [paddedHeight, paddedWidth] = paddedSize(info, height, width);
    const input = new ort.Tensor('float32', toPaddedNCHW(rgba, width, height, paddedHeight, paddedWidth, info.background), [
      1,
      3,
      paddedHeight,
      paddedWidth,
    ]);
    const outputs = await session.run({ [session.inputNames[0]]: input });
    const output = outputs[session.outputNames[0]];
    const expected = [1, 3, paddedHeight * info.scale, paddedWidth * info.scale];
    if (output.dims.join() !== expected.join()) {
      throw new Error(
        `${modelName}'s metadata says x${info.scale} RGB, so a ${paddedWidth}x${paddedHeight} input should give ` +
          `an output of shape (${expected.join(', ')}), but its graph returned (${output.dims.join(', ')})`,
      );
    }
    const outWidth = width * info.scale;
    const outHeight = height * info.scale;
    const pixels = quantizeCrop(await output.getData(), expected[2], expected[3], outHeight, outWidth);
    input.dispose();
    output.dispose();

    const canvas = elements.result;
    canvas.width = outWidth;
    canvas.height = outHeight;
    canvas.getContext('2d').putImageData(new ImageData(pixels, outWidth, outHeight), 0, 0);
    const runMs = performance.now() - runStarted;
    const ms = performance.now() - started;
    await showDownload(info);

    elements.resultSize.textContent = `${outWidth}x${outHeight}`;
    elements.timing.textContent = `${Math.round(ms)} ms`;
    Object.assign(elements.timing.dataset, {
      ms: ms.toFixed(1),
      runMs: runMs.toFixed(1),
      loadMs: loadMs.toFixed(1),
    });
    const threads = backend === 'wasm' ? ort.env.wasm.numThreads : null;
    const threadText = threads ? `, ${threads} thread${threads === 1 ? '' : 's'}` : '';
    elements.info.textContent =
      `(run ${Math.round(runMs)} ms${loadMs ? `, model load ${Math.round(loadMs)} ms` : ''}; ` +
      `${backend}${threadText}; x${info.scale}, input padded to ${paddedWidth}x${paddedHeight})`;
    document.body.dataset.runs = String(Number(document.body.dataset.runs || 0) + 1);
    setState('done', `Done: ${modelName}, ${width}x${height} → ${outWidth}x${outHeight}`);
    return { width: outWidth, height: outHeight, ms, runMs, loadMs, backend, threads };
  } catch (error) {
    setState('error', `Error: ${error.message ?? error}`);
    throw error;
  } finally {
    running = false;
    updateRunButton();
  }
}

function init() {
  const params = new URLSearchParams(location.search);
  for (const { name, label } of MODELS) elements.model.add(new Option(label, name));
  if (params.has('model')) elements.model.value = params.get('model');
  if (params.has('backend')) elements.backend.value = params.get('backend');
  if (params.has('models')) elements.modelsUrl.value = params.get('models');

  elements.file.addEventListener('change', () => choosePhoto(elements.file.files[0]));
  elements.drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    elements.drop.classList.add('over');
  });
  elements.drop.addEventListener('dragleave', () => elements.drop.classList.remove('over'));
  elements.drop.addEventListener('drop', (event) => {
    event.preventDefault();
    elements.drop.classList.remove('over');
    choosePhoto(event.dataTransfer.files[0]);
  });
  elements.run.addEventListener('click', () => run().catch(() => {}));

  window.img2imgRun = run;
  setState('idle', 'Choose a photo.');
}

init();
