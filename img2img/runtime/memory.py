"""How much host memory running a model on an image takes, and whether the machine has it.

An x4 model turns a 12000x12000 photo into 2.3 gigapixels: its 8-bit output alone is 6.9 GB,
and the encoder's own copy and the tile row in float32 come on top (a PNG written as the tiles
make it holds only the tile row). Running into the limit
half-way ends in a MemoryError (or the kernel's OOM killer) after minutes of work, so the
runtime estimates the peak before it starts and refuses, with the figures, what cannot fit.

No torch here: the inference path imports this module.
"""

from __future__ import annotations

from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no address-space limit to read
    resource = None

from img2img.errors import InferenceMemoryError

# Host bytes per output pixel, measured with benchmarks/tiling_memory.py (see benchmarks/RESULTS.md):
# the output buffer (3 samples), and for JPEG and WebP its copy in the encoder (Pillow holds RGB
# as 4 bytes a pixel; PNG is encoded band by band from the buffer).
_BYTES_PER_OUTPUT_SAMPLE = {8: 1, 16: 2}
_ENCODER_BYTES_PER_PIXEL = {8: 4, 16: 0}  # JPEG and WebP are 8-bit: 16-bit buffers only go to PNG
# Host bytes per input pixel: the float32 RGB (and opacity) image the net reads.
_BYTES_PER_INPUT_PIXEL = 3 * 4 + 4
# What onnxruntime, numpy and the interpreter take besides (measured on a tiny image).
_BASELINE_BYTES = 300 << 20


def bytes_needed(
    height: int, width: int, *, scale: int, bit_depth: int = 8, alpha: bool = False, strip_bytes: int = 0,
    output_format: str | None = None, streamed: bool = False,
) -> int:
    """Estimated peak host bytes for running an x`scale` model on a (height, width) image and
    writing the result as `output_format` ("PNG", "JPEG", "WEBP"; None: the costliest): input
    floats, output buffer (and alpha plane), the encoder's copy (none for PNG, which is encoded
    band by band from the buffer), and `strip_bytes` of tiling working set. A `streamed` result
    goes to the PNG encoder band by band as the tiles make it, so it has no buffer at all."""
    if streamed:
        return _BASELINE_BYTES + height * width * _BYTES_PER_INPUT_PIXEL + strip_bytes
    output_pixels = height * scale * width * scale
    samples = 3 + (1 if alpha else 0)
    copy = 0 if output_format == "PNG" else _ENCODER_BYTES_PER_PIXEL[bit_depth]
    output = output_pixels * (samples * _BYTES_PER_OUTPUT_SAMPLE[bit_depth] + copy)
    return _BASELINE_BYTES + height * width * _BYTES_PER_INPUT_PIXEL + output + strip_bytes


def available_bytes() -> int:
    """Host memory this process may still take: the least of the kernel's MemAvailable, the
    cgroup's limit less its usage (containers), and the address-space limit (`ulimit -v`) less
    what the process has mapped. 4 GiB where none can be read."""
    limits = []
    meminfo = _read("/proc/meminfo")
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            limits.append(int(line.split()[1]) * 1024)
    cgroup_max, cgroup_now = _read("/sys/fs/cgroup/memory.max").strip(), _read("/sys/fs/cgroup/memory.current").strip()
    if cgroup_max.isdigit() and cgroup_now.isdigit():
        limits.append(int(cgroup_max) - int(cgroup_now))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS) if resource is not None else (-1, -1)
    if resource is not None and soft != resource.RLIM_INFINITY:
        mapped = 0
        for line in _read("/proc/self/status").splitlines():
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
        limits.append(soft - mapped)
    return max(0, min(limits)) if limits else 4 << 30


def check_fits(
    height: int, width: int, *, scale: int, bit_depth: int = 8, alpha: bool = False, strip_bytes: int = 0,
    output_format: str | None = None, streamed: bool = False,
) -> None:
    """Raises before any work when the run of `bytes_needed` cannot fit in `available_bytes`.

    Raises:
        InferenceMemoryError: with both figures and what to do.
    """
    needed = bytes_needed(
        height, width, scale=scale, bit_depth=bit_depth, alpha=alpha, strip_bytes=strip_bytes,
        output_format=output_format, streamed=streamed,
    )
    free = available_bytes()
    if needed > free:
        out_h, out_w = height * scale, width * scale
        advice = (
            "use a smaller --tile (one row of tiles at the output size is held), shrink the image first, or "
            "free memory"
            if streamed
            else "shrink the image first, use a smaller --scale, write .png (encoded as it is made, without "
            "holding the result), or free memory (a smaller --tile does not help: the result itself is what "
            "does not fit)"
        )
        raise InferenceMemoryError(
            f"a {width}x{height} image at x{scale} makes a {out_w}x{out_h} result ({out_w * out_h / 1e6:,.0f} "
            f"megapixels) and needs about {_gib(needed)} of memory, but {_gib(free)} is free; {advice}"
        )


def _gib(count: int) -> str:
    return f"{count / (1 << 30):.1f} GiB"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


