"""A small streaming multipart/form-data parser (RFC 7578), standard library only.

It reads the body from any object with read(n) -> bytes (b"" at the end), in blocks, and
never holds more than one block plus the delimiter in memory: file parts are spooled to
temporary files, other fields are kept in memory up to a small limit.

    parts = parse(reader, boundary, tmp_dir, file_limit=25 << 20)
    parts.fields  -> {"model": ["whisper-1"], "timestamp_granularities[]": ["word", "segment"]}
    parts.files   -> {"file": UploadedFile(filename, content_type, path, size)}

Errors raise FormDataError (malformed body -> status 400) or FileTooLarge (status 413).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field

BLOCK = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_PARTS = 64


class FormDataError(Exception):
    status = 400


class FileTooLarge(FormDataError):
    status = 413


@dataclass
class UploadedFile:
    filename: str
    content_type: str
    path: str
    size: int


@dataclass
class FormData:
    fields: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def get(self, name, default=None):
        v = self.fields.get(name)
        return v[0] if v else default

    def getlist(self, name):
        return list(self.fields.get(name, []))


_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,200})"|([^\s;,]{1,200}))', re.I)


def boundary_from_content_type(content_type: str):
    """The boundary of a multipart/form-data Content-Type, or None."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        return None
    m = _BOUNDARY_RE.search(content_type)
    if not m:
        return None
    return (m.group(1) or m.group(2)).encode("latin-1")


def _parse_disposition(value: str):
    """Content-Disposition: form-data; name="x"; filename="y" -> (name, filename or None)."""
    params = {}
    for m in re.finditer(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', value):
        key = m.group(1).lower()
        val = m.group(2) if m.group(2) is not None else (m.group(3) or "").strip()
        params[key] = val.replace('\\"', '"').replace("\\\\", "\\")
    return params.get("name"), params.get("filename")


class _Buffered:
    """Accumulating reader over the body: find delimiters that span reads."""

    def __init__(self, reader):
        self.reader = reader
        self.buf = bytearray()
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        data = self.reader.read(BLOCK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True


def parse(reader, boundary: bytes, tmp_dir: str, file_limit: int, field_limit: int = 64 * 1024) -> FormData:
    """Parse a multipart/form-data body. Temporary files are created in tmp_dir
    (the caller removes that directory)."""
    out = FormData()
    b = _Buffered(reader)
    dash_boundary = b"--" + boundary
    delimiter = b"\r\n" + dash_boundary

    # Preamble: find the first boundary (it may start the body without a leading CRLF).
    while True:
        i = b.buf.find(dash_boundary)
        if i >= 0 and (i == 0 or b.buf[i - 2:i] == b"\r\n"):
            del b.buf[:i + len(dash_boundary)]
            break
        if len(b.buf) > MAX_HEADER_BYTES:
            raise FormDataError("multipart body does not start with the boundary")
        if not b.fill():
            raise FormDataError("multipart body has no boundary")

    nparts = 0
    while True:
        if _after_boundary(b):
            _drain(b)
            return out
        # headers
        while True:
            j = b.buf.find(b"\r\n\r\n")
            if j >= 0:
                break
            if len(b.buf) > MAX_HEADER_BYTES:
                raise FormDataError("multipart part headers too large")
            if not b.fill():
                raise FormDataError("multipart body ended inside part headers")
        head = bytes(b.buf[:j]).decode("utf-8", errors="replace")
        del b.buf[:j + 4]
        nparts += 1
        if nparts > MAX_PARTS:
            raise FormDataError("too many multipart parts")
        name, filename, ctype = None, None, "application/octet-stream"
        for line in head.split("\r\n"):
            if ":" not in line:
                continue
            k, v = line.split(":", 1)
            k = k.strip().lower()
            if k == "content-disposition":
                name, filename = _parse_disposition(v)
            elif k == "content-type":
                ctype = v.strip()
        if name is None:
            raise FormDataError("multipart part without a name")

        # body: everything up to the next delimiter
        if filename is not None:
            fd, path = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
            sink = os.fdopen(fd, "wb")
            size = 0
        else:
            sink = None
            value = bytearray()
        try:
            while True:
                k = b.buf.find(delimiter)
                if k >= 0:
                    chunk, rest = b.buf[:k], k + len(delimiter)
                else:
                    # keep a tail that may be the start of the delimiter
                    keep = len(delimiter) - 1
                    chunk, rest = b.buf[:max(0, len(b.buf) - keep)], None
                if chunk:
                    if sink is not None:
                        size += len(chunk)
                        if size > file_limit:
                            raise FileTooLarge(f"file '{filename}' is larger than {file_limit} bytes")
                        sink.write(chunk)
                    else:
                        value += chunk
                        if len(value) > field_limit:
                            raise FormDataError(f"form field '{name}' is too large")
                if rest is not None:
                    del b.buf[:rest]
                    break
                del b.buf[:len(chunk)]
                if not b.fill():
                    raise FormDataError("multipart body ended before the closing boundary")
        finally:
            if sink is not None:
                sink.close()
        if sink is not None:
            out.files[name] = UploadedFile(os.path.basename(filename), ctype, path, size)
        else:
            out.fields.setdefault(name, []).append(value.decode("utf-8", errors="replace"))


def _after_boundary(b: _Buffered) -> bool:
    """Consume the rest of a boundary line; True when it was the closing boundary ("--")."""
    while True:
        while len(b.buf) < 2 and b.fill():
            pass
        if b.buf[:2] == b"--":
            return True
        e = b.buf.find(b"\r\n")
        if e >= 0:
            if b.buf[:e].strip(b" \t"):  # only transport padding may follow a boundary
                raise FormDataError("garbage after a multipart boundary")
            del b.buf[:e + 2]
            return False
        if len(b.buf) > 1024 or not b.fill():
            raise FormDataError("multipart body ended after a boundary")


def _drain(b: _Buffered):
    """Read and drop the epilogue so the connection stays usable (bounded by the reader)."""
    b.buf.clear()
    while b.fill():
        b.buf.clear()
