"""Large predict bodies are decoded and large answers encoded in a codec process, so one big
request never stops the endpoint's event loop (JSON parsing holds Python's lock for its whole
length: a thread would not help). One codec process per endpoint, started at the first large
request: big requests queue for it; small ones never wait behind them."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
from tornado.escape import json_encode, utf8

from .errors import ServingError
from .model import DEFAULT_SIGNATURE
from .protocol import format_outputs, inputs_of, parse_body
from .tensors import InputSpec, prepare

LARGE_BODY = 256 * 1024  # bytes of request JSON (~4 ms to parse)
LARGE_OUTPUT = 16 * 1024  # values in the answer (~30 ms to format)


@dataclass(frozen=True)
class Inputs:
    """The signature names and input specs of a model version, for the codec process."""

    signatures: dict[str, dict[str, InputSpec]]
    check_shapes: dict[str, bool]


class _Names:
    """What inputs_of reads of a signature: its input names."""

    def __init__(self, specs: dict[str, InputSpec]):
        self.inputs = specs


def inputs_for(model: Any) -> Inputs:
    """What the codec process needs of ``model`` (a ModelVersion) to decode a predict."""
    sigs = model.signatures
    return Inputs(
        {n: s.plain for n, s in sigs.items()}, {n: s.check_shapes for n, s in sigs.items()}
    )


def decode_predict(
    raw: bytes, inputs: Inputs
) -> tuple[str | None, dict[str, np.ndarray] | None, bool]:
    """(signature name, input arrays, row format) of a predict body; arrays None when the
    model has no such signature (the endpoint then says so as for any request)."""
    body = parse_body(raw)
    name = body.get("signature_name")
    specs = inputs.signatures.get(name or DEFAULT_SIGNATURE)
    if specs is None:
        return name, None, False
    named, rows = inputs_of(body, _Names(specs))
    key = name or DEFAULT_SIGNATURE
    return name, prepare(key, specs, named, inputs.check_shapes[key]), rows


def check_body(raw: bytes) -> None:
    """BadRequest when ``raw`` is not a predict body (nothing parsed is sent back)."""
    parse_body(raw)


def encode_outputs(outputs: dict[str, np.ndarray], rows: bool) -> bytes:
    """The answer's bytes, exactly as Tornado writes the dict (RequestHandler.write)."""
    return utf8(json_encode(format_outputs(outputs, rows)))


def large_outputs(outputs: dict[str, np.ndarray]) -> bool:
    return sum(int(np.size(v)) for v in outputs.values()) >= LARGE_OUTPUT


def _watch_parent(parent: int) -> None:
    """In the codec process: exit as soon as the endpoint process is gone (a killed endpoint
    leaves nothing running behind it)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="watch-endpoint", daemon=True).start()


class Codec:
    """The endpoint's codec process (one worker: large requests take turns)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawned, never forked: the endpoint runs TensorFlow threads
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def run(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), function, *args)
        except BrokenProcessPool:  # killed (out of memory?): the next request starts another
            self._pool = None
            raise ServingError(
                "The endpoint's decoding process stopped while handling this request (out "
                "of memory?); send it again, or split it into smaller requests"
            ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
