// Read an ONNX file's metadata_props without a protobuf library.
//
// ModelProto field 14 is `repeated StringStringEntryProto metadata_props`, and each entry holds
// `string key = 1; string value = 2;`. Everything else in the file (the graph and its weights,
// field 7, is nearly all of it) is skipped by its length, so this reads a few bytes per field.

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
const METADATA_PROPS = 14;

// One protobuf message's fields: calls visit(fieldNumber, wireType, start, end) for each
// length-delimited field (its payload is bytes[start, end)) and skips the others.
function walk(bytes, start, end, visit) {
  let at = start;
  const varint = () => {
    // Up to 10 bytes; lengths and tags fit a double exactly (files are far below 2^53 bytes).
    let value = 0;
    let factor = 1;
    for (let count = 0; count < 10; count += 1) {
      if (at >= end) throw new Error('truncated varint');
      const byte = bytes[at++];
      value += (byte & 0x7f) * factor;
      if (byte < 0x80) return value;
      factor *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  };
  while (at < end) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === VARINT) varint();
    else if (wire === FIXED64) at += 8;
    else if (wire === FIXED32) at += 4;
    else if (wire === LENGTH_DELIMITED) {
      const length = varint();
      if (at + length > end) throw new Error(`field ${field} runs past the end of its message`);
      visit(field, at, at + length);
      at += length;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire} (field ${field})`);
    }
    if (at > end) throw new Error(`field ${field} runs past the end of its message`);
  }
}

/**
 * The metadata_props of an ONNX model as a plain object of strings.
 * @param {ArrayBuffer|Uint8Array} buffer the whole .onnx file
 * @returns {Object<string, string>}
 */
export function readMetadataProps(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const text = new TextDecoder('utf-8');
  const props = {};
  walk(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== METADATA_PROPS) return;
    let key = '';
    let value = '';
    walk(bytes, start, end, (inner, from, to) => {
      if (inner === 1) key = text.decode(bytes.subarray(from, to));
      else if (inner === 2) value = text.decode(bytes.subarray(from, to));
    });
    props[key] = value;
  });
  return props;
}
