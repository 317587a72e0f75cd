// The img2img model contract, read from the .onnx file itself (no dependency but Node's own).
//
// An exported model describes itself in its ONNX metadata_props (all strings). This module
// reads them straight out of the file's protobuf bytes and parses them the way the Python
// runtime's `ModelInfo.from_metadata` (img2img/contract.py) does, with the same checks, so a file
// the Python runtime refuses is refused here too. It also holds the size arithmetic of the
// contract: how an input is padded before the net (bottom and right only, to at least min_size
// and a multiple of multiple_of) and how the output is cropped back (scale times the input).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

// The input layouts a graph may declare, by the kind of each input in order.
export const INPUT_LAYOUTS = [
  ['image'],
  ['image', 'mask'],
  ['image', 'style', 'style_weights', 'alpha'],
  ['z'],
  ['z', 'label'],
];
export const PRECISIONS = ['fp32', 'fp16', 'int8'];

// The largest value each size-giving metadata field may take (a larger one means a broken or
// hostile file: these values size buffers and padding).
export const METADATA_LIMITS = {
  scale: 16,
  channels: 4,
  multiple_of: 1024,
  min_size: 4096,
  resolution: 8192,
  style_size: 4096,
  latent_dim: 16384,
};

/** A model file that does not follow the contract, or a request it cannot serve. */
export class ModelError extends Error {}

// ------------------------------------------------------------------ protobuf

/**
 * The metadata_props of an ONNX ModelProto as a plain object of strings.
 *
 * ModelProto field 14 is `repeated StringStringEntryProto metadata_props`, and each entry is
 * {key = 1, value = 2}, both strings. Every other field is skipped by its wire type, so a large
 * graph costs nothing but reading the file.
 */
export function readMetadataProps(bytes, source = 'the model') {
  const props = {};
  for (const [field, wire, value] of protobufFields(bytes, 0, bytes.length, source)) {
    if (field !== 14 || wire !== 2) continue;
    let key = '';
    let text = '';
    for (const [entryField, entryWire, entryValue] of protobufFields(bytes, value[0], value[1], source)) {
      if (entryWire !== 2) continue;
      const decoded = Buffer.from(bytes.buffer, bytes.byteOffset + entryValue[0], entryValue[1] - entryValue[0]).toString('utf8');
      if (entryField === 1) key = decoded;
      else if (entryField === 2) text = decoded;
    }
    props[key] = text; // a repeated key: the last one wins, as in onnxruntime's map
  }
  return props;
}

/** The fields of the protobuf message in bytes[start, end): [field number, wire type, value],
 * the value being a number for varints and [begin, end) offsets for length-delimited fields. */
function* protobufFields(bytes, start, end, source) {
  let at = start;
  const varint = () => {
    let value = 0;
    let factor = 1;
    for (let shift = 0; shift < 70; shift += 7) {
      if (at >= end) break;
      const byte = bytes[at++];
      value += (byte & 0x7f) * factor; // arithmetic, not bit shifts: lengths may pass 2**31
      if (byte < 0x80) return value;
      factor *= 128;
    }
    throw new ModelError(`${source} is not an ONNX model (its protobuf is cut short or malformed)`);
  };
  while (at < end) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      yield [field, wire, varint()];
      continue;
    }
    let size;
    if (wire === 1) size = 8;
    else if (wire === 5) size = 4;
    else if (wire === 2) size = varint();
    else throw new ModelError(`${source} is not an ONNX model (protobuf wire type ${wire} at byte ${at})`);
    if (at + size > end) {
      throw new ModelError(`${source} is not an ONNX model (a field runs past the end of the file)`);
    }
    yield [field, wire, [at, at + size]];
    at += size;
  }
}

// ------------------------------------------------------------------ ModelInfo

/**
 * Parse metadata_props (all strings) as `ModelInfo.from_metadata` does; `source` names the file
 * in error messages. Returns a plain object with the ModelInfo attributes (snake_case keys).
 */
export function parseModelInfo(props, source) {
  const has = (key) => Object.prototype.hasOwnProperty.call(props, key);
  const get = (key, fallback) => (has(key) ? props[key] : fallback);
  if (!has('scale')) {
    throw new ModelError(
      `${source} has no 'scale' in its ONNX metadata; export it with \`img2img export\`, ` +
        'which records scale, multiple_of and min_size',
    );
  }
  const integer = (key, fallback) => {
    const text = get(key, String(fallback));
    const value = pythonInt(text);
    if (value === null) {
      throw new ModelError(`${source}: metadata '${key}' is '${text}', expected a whole number; re-export the model`);
    }
    if (!(value >= 1 && value <= METADATA_LIMITS[key])) {
      throw new ModelError(
        `${source}: metadata '${key}' is ${value}, expected 1 to ${METADATA_LIMITS[key]}; re-export the model`,
      );
    }
    return value;
  };
  const optional = (key) => (has(key) ? integer(key, 1) : 0);

  const rangeText = get('range', '0,1');
  const parts = rangeText.split(',').map(pythonFloat);
  if (parts.length !== 2 || parts.includes(null)) {
    throw new ModelError(`${source}: metadata 'range' is '${rangeText}', expected 'low,high'; re-export the model`);
  }
  if (parts[0] !== 0 || parts[1] !== 1) {
    throw new ModelError(
      `${source}: metadata 'range' is '${rangeText}', but the runtime feeds and reads [0, 1]; ` +
        'export it with `img2img export`, which puts the normalisation inside the graph',
    );
  }
  const inputs = get('inputs', 'image').split(',').map((kind) => kind.trim());
  if (!INPUT_LAYOUTS.some((layout) => sameList(layout, inputs))) {
    const layouts = INPUT_LAYOUTS.map((layout) => `'${layout.join(',')}'`).join(', ');
    throw new ModelError(
      `${source}: metadata 'inputs' is '${props.inputs}'; this runtime runs ${layouts} models, re-export the model`,
    );
  }
  const precision = get('precision', 'fp32');
  if (!PRECISIONS.includes(precision)) {
    throw new ModelError(`${source}: metadata 'precision' is '${precision}', expected one of ${PRECISIONS.join(', ')}; re-export the model`);
  }
  let config = {};
  if (get('config', '')) {
    try {
      config = JSON.parse(props.config);
    } catch (error) {
      throw new ModelError(`${source}: metadata 'config' is not valid JSON (${error.message}); re-export the model`);
    }
  }
  const flags = {};
  for (const key of ['whole_image', 'opaque_output']) {
    flags[key] = get(key, '0').trim();
    if (flags[key] !== '0' && flags[key] !== '1') {
      throw new ModelError(`${source}: metadata '${key}' is '${flags[key]}', expected '1' or '0'; re-export the model`);
    }
  }
  const text = {};
  for (const key of ['task', 'license', 'data', 'source', 'version', 'trained_as', 'direction', 'size', 'domains', 'style']) {
    text[key] = get(key, '');
  }
  return {
    ...text,
    name: get('name', basename(source).replace(/\.[^.]*$/, '')),
    scale: integer('scale', 1),
    channels: integer('channels', 3),
    multiple_of: integer('multiple_of', 1),
    min_size: integer('min_size', 1),
    range: [parts[0], parts[1]],
    inputs,
    precision,
    config,
    background: has('background') ? parseBackground(props.background, source) : null,
    whole_image: flags.whole_image === '1',
    // The net paints over what its input leaves transparent (a colouring model): its output is
    // written opaque, as the Python runtime's alpha "auto" does.
    opaque_output: flags.opaque_output === '1',
    resolution: optional('resolution'),
    style_size: optional('style_size'),
    latent_dim: optional('latent_dim'),
    labels: get('labels', '').split(',').filter((name) => name),
    generates: inputs[0] === 'z',
  };
}

/** Metadata "r,g,b" (each 0-255) -> [r, g, b]. */
function parseBackground(text, source) {
  const values = text.split(',').map(pythonInt);
  if (values.length !== 3 || !values.every((value) => value !== null && value >= 0 && value <= 255)) {
    throw new ModelError(
      `${source}: metadata 'background' is '${text}', expected 'r,g,b' with each 0-255; re-export the model`,
    );
  }
  return values;
}

/** The model's metadata, read from the file at `path` and parsed. */
export function readModelInfo(path) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new ModelError(`cannot read model file ${path} (${error.code || error.message}); pass a path to an .onnx file`);
  }
  return parseModelInfo(readMetadataProps(bytes, path), String(path));
}

/** The (height, width) an input is padded to: at least min_size, a multiple of multiple_of. */
export function paddedSize(info, height, width) {
  const align = (length) => Math.ceil(Math.max(length, info.min_size) / info.multiple_of) * info.multiple_of;
  return [align(height), align(width)];
}

/**
 * Pad planar (C, height, width) float32 samples on the bottom and right to (C, toHeight, toWidth),
 * as the Python runtime's `_pad_bottom_right` does with numpy: reflection (the edge pixel itself
 * not repeated) where the pad is shorter than the image along that axis, else the edge pixel
 * repeated; with `fill` (C values in [0, 1]), that colour instead (a model's background).
 * Padding only the far sides keeps output pixel (y, x) aligned with input (y / s, x / s).
 */
export function padBottomRight(planes, channels, height, width, toHeight, toWidth, fill = null) {
  if (toHeight === height && toWidth === width) return planes;
  const rows = axisSource(height, toHeight);
  const columns = axisSource(width, toWidth);
  const out = new Float32Array(channels * toHeight * toWidth);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < toHeight; y++) {
      const from = (c * height + rows[y]) * width;
      const to = (c * toHeight + y) * toWidth;
      for (let x = 0; x < toWidth; x++) {
        out[to + x] = fill && (y >= height || x >= width) ? fill[c] : planes[from + columns[x]];
      }
    }
  }
  return out;
}

/** The model's background as the padding colour of its image input ([0, 1] per channel), or
 * null for a model without one (padded by reflection). */
export function backgroundFill(info) {
  return info.background ? Float32Array.from(info.background, (value) => value / 255) : null;
}

/** For each index 0..target-1 of a padded axis, the index of the original 0..length-1 it copies. */
function axisSource(length, target) {
  const pad = target - length;
  const reflect = pad < length;
  const source = new Int32Array(target);
  for (let i = 0; i < target; i++) {
    if (i < length) source[i] = i;
    else source[i] = reflect ? 2 * (length - 1) - i : length - 1;
  }
  return source;
}

// ------------------------------------------------------------------ helpers

function sameList(a, b) {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}

/** Python's int(text) for plain decimal text (surrounding spaces, a sign, digit underscores);
 * null where int() would raise. */
function pythonInt(text) {
  const trimmed = text.trim();
  if (!/^[+-]?\d+(_\d+)*$/.test(trimmed)) return null;
  return Number(trimmed.replaceAll('_', ''));
}

/** Python's float(text) for decimal text; null where float() would raise. */
function pythonFloat(text) {
  const trimmed = text.trim().replaceAll('_', '');
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(trimmed) && !/^[+-]?(inf|infinity|nan)$/i.test(trimmed)) {
    return null;
  }
  const lower = trimmed.toLowerCase().replace(/^\+/, '');
  if (lower === 'inf' || lower === 'infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (lower.endsWith('nan')) return NaN;
  return Number(trimmed);
}
