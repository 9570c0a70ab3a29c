"""Server-side adaptive batching: concurrent row requests share one model call.

A request waits at most ``max_wait`` seconds for others; a batch closes early when it reaches
``max_batch_size`` rows. Each request gets back exactly its own rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from .model import Signature


class Batcher:
    def __init__(self, max_batch_size: int, max_wait: float):
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self._queues: dict[int, asyncio.Queue] = {}
        self._workers: dict[int, asyncio.Task] = {}
        self.in_flight = 0  # requests between arrival and answer

    async def run(
        self, signature: Signature, tensors: dict[str, Any], observe: Any = None
    ) -> dict[str, np.ndarray]:
        rows = int(next(iter(tensors.values())).shape[0])
        if rows >= self.max_batch_size:
            return await asyncio.to_thread(signature.call, tensors)
        key = id(signature)
        if key not in self._queues:
            self._queues[key] = asyncio.Queue()
            self._workers[key] = asyncio.ensure_future(self._work(signature, key, observe))
        future = asyncio.get_running_loop().create_future()
        await self._queues[key].put((tensors, rows, future))
        self.in_flight += 1
        try:
            return await future
        finally:
            self.in_flight -= 1

    async def _work(self, signature: Signature, key: int, observe: Any) -> None:
        import tensorflow as tf

        queue = self._queues[key]
        while True:
            batch = [await queue.get()]
            size = batch[0][1]
            deadline = asyncio.get_running_loop().time() + self.max_wait
            # Alone? Then waiting for company only adds latency.
            while size < self.max_batch_size and (self.in_flight > len(batch) or not queue.empty()):
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                if size + item[1] > self.max_batch_size:
                    await self._call(signature, batch, tf, observe)
                    batch, size = [], 0
                batch.append(item)
                size += item[1]
            if batch:
                await self._call(signature, batch, tf, observe)

    @staticmethod
    async def _call(signature: Signature, batch: list, tf: Any, observe: Any) -> None:
        names = list(batch[0][0])
        merged = {n: tf.concat([t[n] for t, _, _ in batch], axis=0) for n in names}
        try:
            outputs = await asyncio.to_thread(signature.call, merged)
        except Exception as e:  # every waiting request learns of it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        if observe:
            observe(sum(rows for _, rows, _ in batch))
        start = 0
        for _, rows, future in batch:
            if not future.done():
                future.set_result({k: v[start : start + rows] for k, v in outputs.items()})
            start += rows
