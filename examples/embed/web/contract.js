// The img2img model contract (img2img/contract.py) and the Python runtime's pre- and
// post-processing (img2img/runtime/onnx_model.py, img2img/files/pixels.py), for the browser.
//
// A model takes "image", float32 (1, 3, H, W) RGB in [0, 1], H and W at least min_size and
// multiples of multiple_of, and returns "output", float32 (1, 3, H * scale, W * scale) in [0, 1].
// Any other input layout (mask, style images, latents) is refused here.

// Bounds of the size-giving metadata fields, as contract.py's METADATA_LIMITS.
const LIMITS = { scale: 16, channels: 4, multiple_of: 1024, min_size: 4096 };

/**
 * What the page needs from a model's metadata_props, checked as ModelInfo.from_metadata checks it.
 * @param {Object<string, string>} props metadata_props (all strings)
 * @param {string} source the file's name, for messages
 * @returns {{name: string, task: string, style: string, scale: number, multipleOf: number,
 *   minSize: number, wholeImage: boolean, background: string, precision: string}}
 */
export function imageModelInfo(props, source) {
  if (!('scale' in props)) {
    throw new Error(`${source} has no 'scale' in its ONNX metadata; export it with \`img2img export\``);
  }
  const integer = (key) => {
    const text = key in props ? props[key] : '1';
    if (!/^\s*[+-]?\d+\s*$/.test(text)) {
      throw new Error(`${source}: metadata '${key}' is '${text}', expected a whole number`);
    }
    const value = Number.parseInt(text, 10);
    if (value < 1 || value > LIMITS[key]) {
      throw new Error(`${source}: metadata '${key}' is ${value}, expected 1 to ${LIMITS[key]}`);
    }
    return value;
  };
  const range = (props.range ?? '0,1').split(',').map(Number);
  if (range.length !== 2 || range[0] !== 0 || range[1] !== 1) {
    throw new Error(`${source}: metadata 'range' is '${props.range}', but the page feeds and reads [0, 1]`);
  }
  const inputs = (props.inputs ?? 'image').split(',').map((kind) => kind.trim()).join(',');
  if (inputs !== 'image') {
    throw new Error(
      `${source} takes inputs ${inputs}; this page runs image-to-image models only (inputs "image")`,
    );
  }
  const channels = integer('channels');
  if (channels !== 3) throw new Error(`${source} takes ${channels} input channels; the page feeds 3 (RGB)`);
  return {
    name: props.name || source.replace(/\.onnx$/, ''),
    task: props.task ?? '',
    style: props.style ?? '',
    scale: integer('scale'),
    multipleOf: integer('multiple_of'),
    minSize: integer('min_size'),
    wholeImage: (props.whole_image ?? '0').trim() === '1',
    // "r,g,b": the runtime composites transparent pixels onto it before the net.
    background: props.background || '',
    precision: props.precision ?? 'fp32',
  };
}

/** ModelInfo.padded_size: at least min_size, rounded up to a multiple of multiple_of. */
export function paddedSize(info, height, width) {
  const align = (length) => Math.ceil(Math.max(length, info.minSize) / info.multipleOf) * info.multipleOf;
  return [align(height), align(width)];
}

// Source index for padded index `index` along an axis of `length` pixels padded by `pad`
// (np.pad "reflect" when the pad is shorter than the image, else "edge").
function sourceIndex(index, length, pad) {
  if (index < length) return index;
  return pad < length ? 2 * (length - 1) - index : length - 1;
}

/**
 * RGBA bytes (H, W, 4) -> float32 (1, 3, paddedHeight, paddedWidth) RGB in [0, 1], padded on
 * the bottom and right as onnx_model.py's `_pad_bottom_right` pads (alpha is ignored): with the
 * model's `background` ("r,g,b") where it has one, else by reflection.
 * Each sample is byte / 255 rounded to float32, as pixels.py's `unit_float` divides.
 */
export function toPaddedNCHW(rgba, width, height, paddedHeight, paddedWidth, background = '') {
  const plane = paddedHeight * paddedWidth;
  const out = new Float32Array(3 * plane);
  const padY = paddedHeight - height;
  const padX = paddedWidth - width;
  const columns = new Int32Array(paddedWidth);
  for (let x = 0; x < paddedWidth; x += 1) columns[x] = sourceIndex(x, width, padX);
  for (let y = 0; y < paddedHeight; y += 1) {
    const row = sourceIndex(y, height, padY) * width;
    const base = y * paddedWidth;
    for (let x = 0; x < paddedWidth; x += 1) {
      const from = (row + columns[x]) * 4;
      out[base + x] = rgba[from] / 255;
      out[plane + base + x] = rgba[from + 1] / 255;
      out[2 * plane + base + x] = rgba[from + 2] / 255;
    }
  }
  if (background && (padY > 0 || padX > 0)) {
    const fill = background.split(',').map((value) => Number(value) / 255);
    for (let y = 0; y < paddedHeight; y += 1) {
      for (let x = y < height ? width : 0; x < paddedWidth; x += 1) {
        for (let channel = 0; channel < 3; channel += 1) out[channel * plane + y * paddedWidth + x] = fill[channel];
      }
    }
  }
  return out;
}

// np.rint: round half to even.
function roundHalfEven(value) {
  const rounded = Math.round(value);
  return rounded - value === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

/**
 * The model's float32 (1, 3, outHeight, outWidth) output -> opaque RGBA bytes of its top-left
 * (height, width) crop, rounded as pixels.py's `quantize` rounds to uint8: clip to [0, 1],
 * multiply by 255 in float32, round half to even.
 * @throws {Error} an output sample is NaN or infinite (the runtime refuses such a model too)
 */
export function quantizeCrop(output, outHeight, outWidth, height, width) {
  const plane = outHeight * outWidth;
  const rgba = new Uint8ClampedArray(height * width * 4);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const from = y * outWidth + x;
      const to = (y * width + x) * 4;
      for (let channel = 0; channel < 3; channel += 1) {
        const value = output[channel * plane + from];
        if (!Number.isFinite(value)) {
          throw new Error('the model produced NaN or inf; the model is broken (re-export it)');
        }
        const clipped = value < 0 ? 0 : value > 1 ? 1 : value;
        rgba[to + channel] = roundHalfEven(Math.fround(clipped * 255));
      }
      rgba[to + 3] = 255;
    }
  }
  return rgba;
}
