"""A TCP relay the test can cut (a blackhole: bytes wait, nothing is delivered) and heal."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class CuttableProxy:
    """Relays 127.0.0.1:<port> to `target`; `cut()` stops delivery both ways until `heal()`;
    `reset()` drops every connection, and the bytes a cut held back with it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> CuttableProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def reset(self) -> None:
        """Abort every relayed connection (what they held is lost), then relay again."""
        done = threading.Event()

        def abort() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._flowing.set()
            done.set()

        self._loop.call_soon_threadsafe(abort)
        done.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a new connection during a cut gets nowhere
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._relay(reader, up_writer), self._relay(up_reader, writer),
                                 return_exceptions=True)
        finally:
            self._writers -= {writer, up_writer}

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
