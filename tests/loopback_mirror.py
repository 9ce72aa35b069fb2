"""A dataset mirror on 127.0.0.1 for the tests: a real HTTP server in a thread.

`serve(files)` serves `files[name]` (bytes) at `<server.url><name>`, the layout of the usual
MNIST mirrors (base URL + official file name), honours `Range: bytes=N-` (resumed
downloads), records every request and can cut a transfer off half-way; `dead_url()` is a
base URL on 127.0.0.1 where nothing listens; `silent()` accepts connections and never
answers. Used by test_download.py and
test_first_run.py (as $WAE_TF_MNIST_MIRROR). Nothing here touches the internet.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.files[name] (bytes); honours `Range: bytes=N-` (416 past the end);
    records requests.

    server.cut: names whose first full-file response stops after half of its bytes while
    announcing the full Content-Length (a dropped connection)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)
        self.server.requests.append((name, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):  # as S3 and GCS answer a range past the end
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name in self.server.cut and start == 0:
            self.server.cut.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serve(files: dict[str, bytes], prefix: str = "mnist/") -> Iterator:
    """A running mirror of `files`; yields the server, with .url (base URL, ending in "/"),
    .files (editable), .requests ([(name, Range header or None)]) and .cut (set of names)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    server.files, server.requests, server.cut = dict(files), [], set()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/{prefix}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def read_files(folder: Path, names) -> dict[str, bytes]:
    """{name: bytes} of the named files in `folder` (e.g. the shared MNIST .gz files)."""
    return {name: (Path(folder) / name).read_bytes() for name in names}


def dead_url() -> str:
    """A base URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@contextlib.contextmanager
def silent() -> Iterator:
    """A server on 127.0.0.1 that accepts every connection and never answers (a hung
    mirror); yields it, with .url (base URL) and .connections (how many were accepted)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    server = type("SilentServer", (), {})()
    server.url = f"http://127.0.0.1:{listener.getsockname()[1]}/mnist/"
    server.connections = 0
    held, stop = [], threading.Event()

    def accept_and_hold():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)
            server.connections += 1

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
