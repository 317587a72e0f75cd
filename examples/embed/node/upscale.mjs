#!/usr/bin/env node
// Run an img2img image-to-image model (super-resolution, emoji translation, a per-style style
// net) on one image file with onnxruntime-node, exactly as the model's metadata says.

import { ModelError } from './contract.mjs';
import { UsageError, parseCommandLine, runMain, shipped } from './cli.mjs';
import { openModel, runImage } from './model.mjs';
import { composite, interleave, outputFormat, quantizeSample, readImage, resizeBicubic, writeImage } from './pixels.mjs';

const USAGE = `usage: node upscale.mjs INPUT OUTPUT [--model MODEL.onnx] [--threads N]

Run an image-to-image img2img model (superres, translate, per-style style) on INPUT and write
OUTPUT (.png, .jpg or .webp). The whole image goes through the model at once (no tiling), so
memory grows with the image: a 1000x1000 input at x4 needs a few GB.

  --model PATH   the .onnx file (default: weights/superres-x4.onnx of this repository)
  --threads N    onnxruntime intra-op threads (default: all cores)
  -h, --help     show this message

Transparent pixels are laid over the model's metadata "background" first, when it has one
(the emoji translators), and the image is padded with it. An alpha channel comes back unchanged
for same-size models and is resized with the Python runtime's bicubic filter for upscalers; a
model whose metadata says "opaque_output" (it paints over transparent areas: the OpenMoji
colouring model) writes an opaque image. A 16-bit PNG gives a 16-bit PNG.
`;

await runMain('upscale', async () => {
  const { values, positionals } = parseCommandLine(USAGE, ['INPUT', 'OUTPUT'], {
    model: { type: 'string', short: 'm' },
  });
  const [input, output] = positionals;
  try {
    outputFormat(output);
  } catch (error) {
    throw new UsageError(error.message);
  }
  const model = await openModel(values.model ?? shipped('superres-x4.onnx'), { threads: values.threads });
  const { info } = model;
  if (info.generates) {
    throw new ModelError(`${info.name} generates images from noise and takes no input image; use faces.mjs`);
  }
  if (info.inputs.includes('mask')) {
    throw new ModelError(`${info.name} fills a masked region; use inpaint.mjs IMAGE MASK OUTPUT`);
  }
  if (info.inputs.includes('style')) {
    throw new ModelError(
      `${info.name} is an arbitrary-style model that takes style images; this example runs image-only models ` +
        '(use the Python runtime: img2img style --style-image)',
    );
  }
  const image = await readImage(input);
  const { width, height } = image;
  const rgb = composite(image.rgb, image.alpha, info.background);
  const result = await runImage(model, rgb, null, height, width);
  const scale = info.scale;
  const samples = interleave(result, null, image.bitDepth);
  let channels = 3;
  let written = samples;
  if (image.alpha && !info.opaque_output) {
    const alpha = scale === 1 ? sourceAlpha(image) : resizeAlpha(image, scale);
    written = withAlpha(samples, alpha);
    channels = 4;
  }
  await writeImage(output, written, width * scale, height * scale, channels);
  console.log(`${output}: ${width * scale}x${height * scale} from ${input} (${width}x${height}) with ${info.name}`);
});

/** The source's own opacity samples (H * W), exactly as stored. */
function sourceAlpha(image) {
  const count = image.width * image.height;
  const alpha = new image.samples.constructor(count);
  for (let i = 0; i < count; i++) alpha[i] = image.samples[i * 4 + 3];
  return alpha;
}

/** The opacity plane resized `scale` times as the Python runtime resizes it (bicubic). */
function resizeAlpha(image, scale) {
  const count = image.width * image.height;
  const plane = new Float32Array(count);
  for (let i = 0; i < count; i++) plane[i] = image.alpha[i];
  const resized = resizeBicubic(plane, image.width, image.height, image.width * scale, image.height * scale);
  const maximum = image.bitDepth === 16 ? 65535 : 255;
  const out = new image.samples.constructor(resized.length);
  for (let i = 0; i < resized.length; i++) out[i] = quantizeSample(resized[i], maximum);
  return out;
}

/** RGB samples (H * W * 3) and an opacity plane (H * W) as RGBA samples. */
function withAlpha(rgb, alpha) {
  const out = new rgb.constructor(alpha.length * 4);
  for (let i = 0; i < alpha.length; i++) {
    out[i * 4] = rgb[i * 3];
    out[i * 4 + 1] = rgb[i * 3 + 1];
    out[i * 4 + 2] = rgb[i * 3 + 2];
    out[i * 4 + 3] = alpha[i];
  }
  return out;
}
