"""Content stamps: a file symsoft wrote carries the SHA-256 of its own content in its header.

The header holds MARKER followed by 64 hex digits. The digest is taken over the whole file
with those digits set to zeros, so it can be written into the file it describes, in text and
in binary files alike (the PDF carries it in its Info dictionary, where the same number of
bytes keeps every offset valid). A file whose stamp matches its content is one symsoft wrote
and nobody has changed since: regenerating may replace it without --force.
"""

from __future__ import annotations

import hashlib
import re

MARKER = "symsoft-sha256:"
PLACEHOLDER = MARKER + "0" * 64
_STAMP = re.compile(re.escape(MARKER).encode() + rb"([0-9a-f]{64})")
# the stamp sits in the first lines of text files; the PDF's Info dictionary is near its end,
# so the whole file is searched (files are small: a PDF is about 200 KB)


def stamp(content: str | bytes) -> str | bytes:
    """content with its placeholder (at most one) replaced by the digest of content;
    content without a placeholder is returned as it is."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    if data.count(PLACEHOLDER.encode()) != 1:
        return content
    stamped = data.replace(PLACEHOLDER.encode(), (MARKER + _digest(data)).encode())
    return stamped.decode("utf-8") if isinstance(content, str) else stamped


def is_unchanged_output(data: bytes) -> bool:
    """Whether data holds exactly one stamp and the stamp matches the content."""
    found = _STAMP.findall(data)
    if len(found) != 1:
        return False
    claimed = found[0].decode()
    return claimed == _digest(data.replace(MARKER.encode() + found[0], PLACEHOLDER.encode()))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
