"""A loopback HTTP server on raw sockets whose answers misbehave on cue: stall, drip, cut the body short.

Each path gets a list of answers, one per request (the last one repeats); every answer writes bytes
to the client socket itself. Everything is bounded: waits end when the server stops, and a client
that hangs up ends an answer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Answer = Callable[[socket.socket, threading.Event], None]


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in {**headers, "Connection": "close"}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def full(body: bytes, content_type: str = "text/html") -> Answer:
    """A well-formed 200 with its Content-Length."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": content_type, "Content-Length": str(len(body))}) + body)
    return answer


def status(code: int, reason: str = "Status") -> Answer:
    """An empty answer with this status (e.g. 404 for robots.txt)."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head(f"{code} {reason}", {"Content-Length": "0"}))
    return answer


def cut(body: bytes, sent: int) -> Answer:
    """Headers promising the whole body, then `sent` bytes of it, then the connection closes."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "text/html", "Content-Length": str(len(body))}) + body[:sent])
    return answer


def cut_chunked(body: bytes, sent: int) -> Answer:
    """A chunked body announced as one chunk of len(body) bytes that stops after `sent` of them."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "text/html", "Transfer-Encoding": "chunked"})
                     + f"{len(body):x}\r\n".encode() + body[:sent])
    return answer


def stall(body: bytes, sent: int, seconds: float) -> Answer:
    """Headers and `sent` bytes, then silence for `seconds` (or until the server stops)."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "text/html", "Content-Length": str(len(body))}) + body[:sent])
        stop.wait(seconds)
    return answer


def drip(body: bytes, every: float) -> Answer:
    """Headers, then the body one byte every `every` seconds: no single read ever waits long."""
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "text/html", "Content-Length": str(len(body))}))
        for i in range(len(body)):
            if stop.wait(every):
                return
            conn.sendall(body[i:i + 1])  # raises once the client has hung up
    return answer


class RawServer:
    """Serves scripted answers on 127.0.0.1 from a thread; `hits` lists the paths asked, in order."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.hits: list[str] = []
        self._answers: dict[str, list[Answer]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def on(self, path: str, *answers: Answer) -> None:
        """Answer requests for `path` with these, in order; the last one answers every later request."""
        self._answers[path] = list(answers)

    def count(self, path: str) -> int:
        return self.hits.count(path)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                path = request.split(b" ", 2)[1].decode("ascii")
                self.hits.append(path)
                queue = self._answers.get(path) or [status(404, "Not Found")]
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                answer(conn, self._stop)
            except OSError:
                pass  # the client hung up: that is what several answers are for

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)
        self._listener.close()
