"""The file vocabulary training and inference share: which files are images, how they are
listed, decoded and written. Imports numpy and Pillow only, never torch.

- `listing`: IMAGE_SUFFIXES and `image_files`, the one folder lister;
- `decode`: `load_image` / `from_pil` -> LoadedImage, (H, W, 3) float32 RGB in [0, 1];
- `metadata`: format signatures, EXIF orientation, colour profiles;
- `pixels`: `unit_float`, `quantize` (the one rounding), `luma`, `composite`;
- `encode`: `save_image`, `save_png_bands`, `to_pil`;
- `png_stream`: the band-by-band PNG encoder (8 and 16 bits);
- `atomic`: `write_atomically` and its temporary files.
"""

# Pillow's own decompression-bomb error threshold (twice Image.MAX_IMAGE_PIXELS), about
# 13400x13400: larger images are refused unless the caller raises the limit. Here, not in
# `decode`, so the command line can show it as a default without importing numpy and Pillow.
DEFAULT_MAX_PIXELS = 178_956_970
