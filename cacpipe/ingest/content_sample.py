"""A cheap fingerprint of a file's content: its head, spread samples and its tail, hashed.

Size and modification time alone miss a file rewritten in place with the same size and time
(``rsync -a`` or ``cp -p`` of a re-export): a rescan then keeps the old result. Hashing every byte
would read a whole export on each resume; this reads the first ``HEAD_BYTES`` (the DICOM header
of a CT image, which names its UIDs, dates, kernel and rescale, and the first pixel rows; the
file system reads that much ahead anyway), ``SAMPLES`` blocks spread evenly over the rest and the
last block (for a ``.nii.gz``, its gzip trailer holds the CRC-32 of all the image data).

A rewrite that changes only bytes between the samples (a few pixels edited in place, header and
size unchanged) is not seen: docs/scan.md says so, and ``scan --force`` redoes a study.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

HEAD_BYTES = 64 << 10
BLOCK_BYTES = 4 << 10
SAMPLES = 6


def sample_offsets(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of a file of ``size`` bytes that the fingerprint reads."""
    if size <= HEAD_BYTES + (SAMPLES + 1) * BLOCK_BYTES:
        return [(0, size)]  # small file: all of it
    parts = [(0, HEAD_BYTES)]
    span = size - HEAD_BYTES - BLOCK_BYTES
    parts += [(HEAD_BYTES + span * (k + 1) // (SAMPLES + 1), BLOCK_BYTES) for k in range(SAMPLES)]
    parts.append((size - BLOCK_BYTES, BLOCK_BYTES))
    return parts


def content_sample(f: BinaryIO, size: int) -> str:
    """16 hex digits of BLAKE2b over the sampled parts of the open binary file ``f`` (``size``
    bytes); leaves ``f`` at offset 0."""
    h = hashlib.blake2b(digest_size=8)
    for offset, length in sample_offsets(size):
        f.seek(offset)
        h.update(f.read(length))
    f.seek(0)
    return h.hexdigest()


def file_sample(path: str | os.PathLike) -> str:
    """``content_sample`` of the file at ``path``."""
    with open(path, "rb") as f:
        return content_sample(f, os.fstat(f.fileno()).st_size)
