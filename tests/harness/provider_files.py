"""A provider's media links for the incoming-media tests: a local HTTP server that answers
GET <path> with the bytes registered for that path (the query string is ignored, as a signed
link's token would be) and records every request's path in `gets`. With `hold_first`, the first
GET waits until `release` is set, so a test can act while the platform is mid-download."""

from __future__ import annotations

import http.server
import threading


class ProviderFiles:
    def __init__(self, *, hold_first: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        self.release.set()  # a held request must not keep shutdown() waiting
        self._server.shutdown()


def _handler(files: ProviderFiles) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.gets.append(self.path)
            if len(files.gets) == 1:
                files.release.wait(30)
            data = files.files[self.path.split("?")[0]]
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler
