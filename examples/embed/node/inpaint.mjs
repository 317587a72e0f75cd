#!/usr/bin/env node
// Fill the masked pixels of an image with an img2img inpainting model (inputs "image,mask") on
// onnxruntime-node: the whole image at its own size, every unmasked pixel kept exactly.

import { ModelError } from './contract.mjs';
import { UsageError, parseCommandLine, runMain, shipped } from './cli.mjs';
import { openModel, runImage } from './model.mjs';
import { composite, outputFormat, quantizeSample, readImage, readMask, writeImage } from './pixels.mjs';

const USAGE = `usage: node inpaint.mjs IMAGE MASK OUTPUT [--model MODEL.onnx] [--threads N]

Fill the pixels of IMAGE that MASK paints (any pixel that is not black, and not fully
transparent, is a hole) with an inpainting img2img model, and write OUTPUT (.png, .jpg or
.webp). Every other pixel, and the alpha channel, are copied from IMAGE unchanged.

The whole image goes through the model at its own size (the Python runtime's full mode,
\`img2img inpaint IMAGE --mask MASK --full\`), not a crop around the hole scaled to the model's
"resolution", so large images with small holes cost more and may fill less well than the default
of the img2img command.

  --model PATH   the .onnx file (default: weights/inpaint.onnx of this repository)
  --threads N    onnxruntime intra-op threads (default: all cores)
  -h, --help     show this message
`;

await runMain('inpaint', async () => {
  const { values, positionals } = parseCommandLine(USAGE, ['IMAGE', 'MASK', 'OUTPUT'], {
    model: { type: 'string', short: 'm' },
  });
  const [input, maskPath, output] = positionals;
  try {
    outputFormat(output);
  } catch (error) {
    throw new UsageError(error.message);
  }
  const model = await openModel(values.model ?? shipped('inpaint.onnx'), { threads: values.threads });
  const { info } = model;
  if (!info.inputs.includes('mask')) {
    throw new ModelError(`${info.name} takes no mask (inputs ${info.inputs.join(',')}); use upscale.mjs for it`);
  }
  if (info.scale !== 1) {
    throw new ModelError(`model '${info.name}' takes a mask but scales x${info.scale}; inpainting models keep the image's size`);
  }
  const image = await readImage(input);
  const { width, height, channels, samples } = image;
  const hole = await readMask(maskPath, width, height);

  // What the net sees: the image laid over the model's background (if it names one), with the
  // hole's own pixels zeroed, so what is being removed cannot steer the fill.
  const rgb = composite(image.rgb, image.alpha, info.background);
  const count = width * height;
  const blanked = new Float32Array(rgb.length);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < count; i++) blanked[c * count + i] = hole[i] ? 0 : rgb[c * count + i];
  }
  const filled = await runImage(model, blanked, hole, height, width);

  // The file's own samples everywhere, the model's in the hole.
  const out = samples.slice();
  const maximum = image.bitDepth === 16 ? 65535 : 255;
  let changed = 0;
  for (let i = 0; i < count; i++) {
    if (!hole[i]) continue;
    for (let c = 0; c < 3; c++) out[i * channels + c] = quantizeSample(filled[c * count + i], maximum);
    changed++;
  }
  await writeImage(output, out, width, height, channels);
  console.log(`${output}: ${changed} pixel(s) of ${input} (${width}x${height}) filled with ${info.name}`);
});
