// Image files to and from the float planes the models take, with the same arithmetic as the
// Python runtime (img2img/files/pixels.py): samples / 255 (or / 65535) in float32, compositing
// in float32, and one rounding back (clip to [0, 1], x255, round half to even).
//
// Images travel as planar float32 RGB (3, H, W) in [0, 1], which is an NCHW tensor of batch 1,
// with the opacity plane (H, W) beside them when the file has one.

import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, basename, extname, join } from 'node:path';

import sharp from 'sharp';

// The Python runtime's limit on decoded pixels (img2img.files.DEFAULT_MAX_PIXELS).
export const MAX_PIXELS = 178_956_970;

/** A file that cannot be read as an image, or an output that cannot be written. */
export class ImageError extends Error {}

/**
 * Decode an image file as the Python runtime's `load_image` does, for the cases it shares with
 * sharp: EXIF orientation applied, pixels as stored (an embedded colour profile is not applied),
 * gray expanded to RGB, 16-bit sources kept at 16 bits.
 *
 * Returns { width, height, bitDepth (8 or 16), samples (interleaved Uint8Array or Uint16Array,
 * 3 or 4 channels, gray expanded to RGB), channels, rgb (Float32Array (3, H, W)), alpha (Float32Array
 * (H, W) or null) }.
 */
export async function readImage(path) {
  let metadata;
  try {
    metadata = await sharp(path, { limitInputPixels: MAX_PIXELS }).metadata();
  } catch (error) {
    throw new ImageError(`cannot read ${path} as an image (${firstLine(error)})`);
  }
  const wide = metadata.depth === 'ushort';
  let decoded;
  try {
    let pipeline = sharp(path, { limitInputPixels: MAX_PIXELS, ignoreIcc: true, autoOrient: true });
    pipeline = wide ? pipeline.toColourspace('rgb16').raw({ depth: 'ushort' }) : pipeline.toColourspace('srgb').raw();
    decoded = await pipeline.toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new ImageError(`cannot decode ${path} (${firstLine(error)})`);
  }
  const { data, info } = decoded;
  const { width, height, channels } = info;
  if (channels !== 3 && channels !== 4) {
    throw new ImageError(`${path} decoded to ${channels} channels; expected RGB or RGBA`);
  }
  const samples = wide
    ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2)
    : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const maximum = wide ? 65535 : 255;
  const count = width * height;
  const rgb = new Float32Array(3 * count);
  const alpha = channels === 4 ? new Float32Array(count) : null;
  for (let i = 0; i < count; i++) {
    const at = i * channels;
    // A float64 quotient rounded once to float32 equals numpy's float32 division exactly.
    rgb[i] = samples[at] / maximum;
    rgb[count + i] = samples[at + 1] / maximum;
    rgb[2 * count + i] = samples[at + 2] / maximum;
    if (alpha) alpha[i] = samples[at + 3] / maximum;
  }
  return { width, height, bitDepth: wide ? 16 : 8, samples, channels, rgb, alpha };
}

/**
 * The hole a mask image paints, as img2img's `mask_from_pixels`: every pixel with a nonzero
 * colour channel that is not fully transparent. Returns a Float32Array (H, W) of 0 and 1.
 */
export async function readMask(path, width, height) {
  const mask = await readImage(path);
  if (mask.width !== width || mask.height !== height) {
    throw new ImageError(`mask is ${mask.width}x${mask.height} but the image is ${width}x${height}; give a mask of the image's size`);
  }
  const count = width * height;
  const hole = new Float32Array(count);
  let any = false;
  for (let i = 0; i < count; i++) {
    const at = i * mask.channels;
    const { samples } = mask;
    const painted = samples[at] > 0 || samples[at + 1] > 0 || samples[at + 2] > 0;
    const visible = mask.channels === 3 || samples[at + 3] > 0;
    if (painted && visible) {
      hole[i] = 1;
      any = true;
    }
  }
  if (!any) throw new ImageError('mask marks no pixel to fill; paint the region to fill white');
  return hole;
}

/**
 * `rgb` (3, H, W) laid over `background` ([r, g, b], 0-255) with opacity `alpha` (H, W), in
 * float32 step by step as numpy computes `rgb * a + fill * (1 - a)`; `rgb` itself without alpha
 * or background.
 */
export function composite(rgb, alpha, background) {
  if (!alpha || !background) return rgb;
  const count = alpha.length;
  const out = new Float32Array(rgb.length);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const fill = f(background[c] / 255);
    for (let i = 0; i < count; i++) {
      const a = alpha[i];
      out[c * count + i] = f(f(rgb[c * count + i] * a) + f(fill * f(1 - a)));
    }
  }
  return out;
}

/** One float sample to an integer 0..maximum as img2img's `quantize`: NaN as 0, clipped to
 * [0, 1], scaled in float32, rounded half to even (numpy's rint). */
export function quantizeSample(value, maximum) {
  const clipped = value > 1 ? 1 : value >= 0 ? value : 0; // NaN fails both tests: 0
  return roundHalfEven(Math.fround(clipped * maximum));
}

function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Interleaved samples for a result: `rgb` (3, H, W) float planes and an optional `alpha` (H, W)
 * float plane, quantised to `bitDepth` bits. Returns a Uint8Array or Uint16Array of H * W * C.
 */
export function interleave(rgb, alpha, bitDepth) {
  const count = rgb.length / 3;
  const channels = alpha ? 4 : 3;
  const maximum = bitDepth === 16 ? 65535 : 255;
  const out = bitDepth === 16 ? new Uint16Array(count * channels) : new Uint8Array(count * channels);
  for (let i = 0; i < count; i++) {
    const at = i * channels;
    out[at] = quantizeSample(rgb[i], maximum);
    out[at + 1] = quantizeSample(rgb[count + i], maximum);
    out[at + 2] = quantizeSample(rgb[2 * count + i], maximum);
    if (alpha) out[at + 3] = quantizeSample(alpha[i], maximum);
  }
  return out;
}

/** 16-bit samples as 8-bit ones, rounded as the Python writers round: (v + 128) // 257. */
export function toEightBits(samples) {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.floor((samples[i] + 128) / 257);
  return out;
}

/**
 * Resize a float plane (H, W) to (toHeight, toWidth) with a bicubic filter, the arithmetic of
 * Pillow's resize of a float ("F") image, which the Python runtime uses for opacity planes
 * (img2img's `resize_alpha`): Catmull-Rom (a = -0.5) weights centred on pixel centres, widened
 * by the scale when shrinking and normalised to sum 1, rows first, then columns, summed in
 * float64 and stored as float32; the result clipped to [0, 1].
 */
export function resizeBicubic(plane, width, height, toWidth, toHeight) {
  const horizontal = resamplePass(plane, height, width, toWidth, true);
  const both = resamplePass(horizontal, toWidth, height, toHeight, false);
  for (let i = 0; i < both.length; i++) both[i] = both[i] < 0 ? 0 : both[i] > 1 ? 1 : both[i];
  return both;
}

/** One pass of Pillow's separable resampling along rows (`alongRows`) or columns: `lines`
 * lines of `size` samples become lines of `toSize` samples. */
function resamplePass(plane, lines, size, toSize, alongRows) {
  const scale = size / toSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const step = 1 / filterScale;
  const out = new Float32Array(lines * toSize);
  const weights = [];
  for (let to = 0; to < toSize; to++) {
    const centre = (to + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const stop = Math.min(Math.trunc(centre + support + 0.5), size);
    const kernel = [];
    let sum = 0;
    for (let from = first; from < stop; from++) {
      const weight = catmullRom((from - centre + 0.5) * step);
      kernel.push(weight);
      sum += weight;
    }
    weights.push([first, sum === 0 ? kernel : kernel.map((weight) => weight / sum)]);
  }
  for (let line = 0; line < lines; line++) {
    for (let to = 0; to < toSize; to++) {
      const [first, kernel] = weights[to];
      let total = 0;
      for (let k = 0; k < kernel.length; k++) {
        const from = first + k;
        total += kernel[k] * (alongRows ? plane[line * size + from] : plane[from * lines + line]);
      }
      if (alongRows) out[line * toSize + to] = total;
      else out[to * lines + line] = total;
    }
  }
  return out;
}

function catmullRom(x) {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

const FORMATS = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/** The format an output path's suffix asks for; throws for one that cannot be written. */
export function outputFormat(path) {
  const format = FORMATS[extname(path).toLowerCase()];
  if (!format) throw new ImageError(`cannot write '${basename(path)}'; name the output .png, .jpg or .webp`);
  return format;
}

/**
 * Write interleaved samples (Uint8Array or Uint16Array, 3 or 4 channels) to `path`, in the format
 * its suffix names, atomically (a temporary file renamed into place). PNG keeps 16 bits and
 * alpha (JPEG and WebP get 8 bits); JPEG has no alpha, so a transparent image is laid on white first; JPEG and WebP are
 * written at quality 95, as the Python runtime writes them.
 */
export async function writeImage(path, samples, width, height, channels) {
  const format = outputFormat(path);
  const wide = samples instanceof Uint16Array;
  if (wide && format !== 'png') samples = toEightBits(samples);
  let pipeline = sharp(samples, { raw: { width, height, channels } });
  if (wide && format === 'png') pipeline = pipeline.toColourspace('rgb16');
  if (format === 'png') pipeline = pipeline.png();
  else if (format === 'jpeg') pipeline = pipeline.flatten({ background: '#ffffff' }).jpeg({ quality: 95 });
  else pipeline = pipeline.webp({ quality: 95 });
  let encoded;
  try {
    encoded = await pipeline.toBuffer();
  } catch (error) {
    throw new ImageError(`cannot encode ${basename(path)} (${firstLine(error)})`);
  }
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, encoded);
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new ImageError(`cannot write ${path} (${error.code || firstLine(error)})`);
  }
}

export function firstLine(error) {
  return String(error && error.message ? error.message : error).split('\n')[0];
}
