// An exported img2img model in an onnxruntime-node session, run as the contract says.
//
// Inputs are fed by position, in the order the metadata "inputs" lists their kinds (the graph's
// own input names, "input" for instance, do not matter). An image input is float32 (1, 3, H, W)
// RGB in [0, 1], padded bottom and right to the size the metadata asks for; a mask input is
// float32 (1, 1, H, W), 1 = fill, padded the same way. The one output is float32
// (1, 3, H * scale, W * scale) in [0, 1], cropped back to scale times the unpadded input.

import * as ort from 'onnxruntime-node';

import { backgroundFill, ModelError, padBottomRight, paddedSize, readModelInfo } from './contract.mjs';
import { firstLine } from './pixels.mjs';

/**
 * Open `path`: read its metadata (the contract) and start a CPU session. Returns
 * { path, info, session, inputNames, outputName }.
 */
export async function openModel(path, { threads } = {}) {
  const info = readModelInfo(path);
  if (info.channels !== 3) {
    throw new ModelError(`model '${info.name}' takes ${info.channels} input channels; this program feeds 3`);
  }
  const options = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 3 };
  if (threads) options.intraOpNumThreads = threads;
  let session;
  try {
    session = await ort.InferenceSession.create(path, options);
  } catch (error) {
    throw new ModelError(`${path} is not a loadable ONNX model (${firstLine(error)})`);
  }
  if (session.inputNames.length !== info.inputs.length || session.outputNames.length !== 1) {
    throw new ModelError(
      `${path} has ${session.inputNames.length} inputs and ${session.outputNames.length} outputs, but its ` +
        `metadata declares inputs ${info.inputs.join(',')} and one output; export it with \`img2img export\``,
    );
  }
  return { path, info, session, inputNames: session.inputNames, outputName: session.outputNames[0] };
}

/**
 * Run an image model on one whole image (no tiling).
 *
 * rgb: Float32Array (3, height, width) in [0, 1]; mask: Float32Array (height, width) of 0 and 1
 * for a model whose inputs include "mask", else null. Returns the output as a Float32Array
 * (3, height * scale, width * scale), clipped to [0, 1].
 */
export async function runImage(model, rgb, mask, height, width) {
  const { info } = model;
  const takesMask = info.inputs.includes('mask');
  if (takesMask !== Boolean(mask)) {
    throw new ModelError(`${info.name} ${takesMask ? 'needs' : 'takes no'} mask; its inputs are ${info.inputs.join(',')}`);
  }
  const [padHeight, padWidth] = paddedSize(info, height, width);
  const feeds = {
    [model.inputNames[0]]: new ort.Tensor(
      'float32',
      padBottomRight(rgb, 3, height, width, padHeight, padWidth, backgroundFill(info)),
      [1, 3, padHeight, padWidth],
    ),
  };
  if (mask) {
    const padded = padBottomRight(mask, 1, height, width, padHeight, padWidth);
    feeds[model.inputNames[1]] = new ort.Tensor('float32', padded, [1, 1, padHeight, padWidth]);
  }
  let results;
  try {
    results = await model.session.run(feeds, [model.outputName]);
  } catch (error) {
    throw new ModelError(`running ${info.name} on a ${width}x${height} image failed (${firstLine(error)})`);
  }
  const output = results[model.outputName];
  const scale = info.scale;
  const expected = [1, 3, padHeight * scale, padWidth * scale];
  if (output.dims.length !== 4 || output.dims.some((size, index) => size !== expected[index])) {
    throw new ModelError(
      `${info.name}'s metadata says x${scale} RGB, so a ${padWidth}x${padHeight} input should give an output of ` +
        `shape [${expected}], but its graph returned [${output.dims}]; re-export it with \`img2img export\``,
    );
  }
  const outHeight = height * scale;
  const outWidth = width * scale;
  const fullWidth = padWidth * scale;
  const fullPlane = padHeight * scale * fullWidth;
  const data = output.data;
  const result = new Float32Array(3 * outHeight * outWidth);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < outHeight; y++) {
      const from = c * fullPlane + y * fullWidth;
      const to = (c * outHeight + y) * outWidth;
      for (let x = 0; x < outWidth; x++) {
        const value = data[from + x];
        if (!Number.isFinite(value)) {
          const hint = info.precision === 'fp16' ? '; float16 overflowed, use the float32 model file' : '; the model is broken';
          throw new ModelError(`${info.name} produced NaN or inf on a ${width}x${height} input${hint}, nothing was written`);
        }
        result[to + x] = value < 0 ? 0 : value > 1 ? 1 : value;
      }
    }
  }
  return result;
}
