"""A guard on the HTTP port users reach: JSON inference bodies over a cap get a 413, not the server.

A standard (non-binary) HTTP inference request of a few MB was once seen to end tritonserver 2.45 with
signal 11, taking every model down (not reproduced since: docs/serving.md), and JSON costs the server
~4x the bytes of binary data to receive and far more to parse. Triton 2.45 has no option to bound what
it parses (--http-max-input-size came later), so mfssd-serve runs Triton's HTTP endpoint
on a loopback port behind this proxy: a JSON infer request whose JSON part (the whole body, or the
Inference-Header-Content-Length of a binary one) is over the cap is refused with 413 and a message
naming the fix (send the tensors as binary data) before a byte reaches Triton; everything else,
binary tensors of any size, health, metadata and statistics, is passed through unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

from mfssd_deploy.errors import MfssdError

# The largest JSON part forwarded: one pre-processed 300x300 FP32 image as JSON is 5.3 MB and passes, a batch
# of 4 (21 MB) or 2.2 M UINT8 values (8.8 MB) is refused with the fix named: binary data, ~4x smaller.
DEFAULT_CAP_MB = 8.0
INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
BINARY_HEADER = "Inference-Header-Content-Length"
# hop-by-hop headers (RFC 9110 7.6.1) and those the two connections set for themselves
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length"}  # fmt: skip


def json_part(method: str, path: str, headers: Any) -> int | None:
    """Bytes of JSON Triton would parse from this request: None when it is not an inference request or
    its size is not declared (a chunked JSON body, read and counted as it comes)."""
    if method != "POST" or not INFER.match(path):
        return None
    declared = headers.get(BINARY_HEADER) or headers.get("Content-Length")
    return int(declared) if declared is not None and str(declared).isdigit() else None


def too_large(size: int, cap: int) -> dict[str, str]:
    limit = f"{cap / 2**20:g} MB"
    return {"error": f"JSON inference request of {size:,} bytes is over this server's {limit} limit for JSON (it "
                     "protects tritonserver's JSON parser): send the tensors as binary data (tritonclient.http: "
                     "InferInput.set_data_from_numpy(..., binary_data=True), the default)"}  # fmt: skip


class JsonCapProxy:
    """The proxy, on its own thread and event loop: start() returns once it listens, stop() closes it."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], cap_bytes: int) -> None:
        self.listen, self.upstream, self.cap = listen, upstream, cap_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._session: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> JsonCapProxy:
        self._thread = threading.Thread(target=self._run, name="mfssd-json-cap", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s) or self._error is not None:
            raise MfssdError(f"cannot listen on {self.listen[0]}:{self.listen[1]} ({self._error}); pass another "
                             "--http-port")  # fmt: skip
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # reported by start() in one line
            self._error = exc
            self._started.set()
            return
        self._started.set()
        loop.run_forever()
        loop.close()

    async def _open(self) -> None:
        import aiohttp
        from aiohttp import web

        # no total timeout: an inference may legitimately take long; Triton's own timeouts apply
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)
        app = web.Application(client_max_size=2**40)  # bodies are streamed by hand below
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.listen[0] or "0.0.0.0", self.listen[1], reuse_address=True).start()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        size = json_part(request.method, request.path, request.headers)
        if size is not None and size > self.cap:
            return web.json_response(too_large(size, self.cap), status=413)
        if size is None and request.method == "POST" and INFER.match(request.path):
            body = await self._read_capped(request)  # no declared size: count the JSON as it comes
            if isinstance(body, int):
                return web.json_response(too_large(body, self.cap), status=413)
        else:
            body = bytes(await request.content.read())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = f"http://{self.upstream[0]}:{self.upstream[1]}{request.path_qs}"
        try:
            async with self._session.request(request.method, url, headers=headers, data=body) as up:
                data = await up.read()
                out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
                return web.Response(status=up.status, body=data, headers=out)
        except OSError as exc:  # Triton stopping or gone: a clean 503, the client retries or gives up
            return web.Response(status=503, text=json.dumps({"error": f"tritonserver unreachable ({exc})"}),
                                content_type="application/json")  # fmt: skip

    async def _read_capped(self, request: Any) -> bytes | int:
        """The body, or its size so far once it passes the cap."""
        chunks, total = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > self.cap:
                return total
            chunks.append(chunk)
        return b"".join(chunks)
