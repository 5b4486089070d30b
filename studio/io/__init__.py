"""Image I/O: read, validate and normalise inputs; write outputs atomically with their metadata.

Everything that is not RGB pixels is split off on the way in (alpha, bit depth, ICC profile, EXIF,
XMP, grayscale-ness) and put back on the way out, so engines only ever see float32 RGB in [0, 1].
One module per concern: `formats` (extensions, folder scan), `read` (decode and validate),
`jpeg_quality`, `metadata` (EXIF/XMP/DPI/provenance), `picture`, `alpha` (colour bleed), `paths`
(output-path safety), `write` (atomic writes), `encode` (8- and 16-bit encoders).
"""

from studio.io.alpha import bleed_colors
from studio.io.formats import (
    FORMAT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    VIDEO_EXTENSIONS,
    WRITABLE_EXTENSIONS,
    image_files,
    output_format,
)
from studio.io.jpeg_quality import jpeg_quality
from studio.io.metadata import stated_dpi
from studio.io.os_errors import os_words
from studio.io.paths import InputSet, check_output_path, input_problem, real_path
from studio.io.picture import Picture, print_size, with_pixels
from studio.io.read import MIN_SIDE, check_output_budget, read_image, read_provenance
from studio.io.write import (
    atomic,
    jpeg_quality_problem,
    remove_stale_parts,
    write_image,
    write_png_text,
    write_text_atomic,
)

__all__ = [
    "FORMAT_EXTENSIONS",
    "MIN_SIDE",
    "SUPPORTED_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "InputSet",
    "Picture",
    "atomic",
    "bleed_colors",
    "check_output_budget",
    "check_output_path",
    "image_files",
    "input_problem",
    "jpeg_quality",
    "jpeg_quality_problem",
    "os_words",
    "output_format",
    "print_size",
    "read_image",
    "read_provenance",
    "real_path",
    "remove_stale_parts",
    "stated_dpi",
    "with_pixels",
    "write_image",
    "write_png_text",
    "write_text_atomic",
]
