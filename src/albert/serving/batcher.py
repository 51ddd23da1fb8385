"""The server's model loop: one thread owns the pipeline; requests' inputs are batched by count and by tokens.

Every request is a queue of inputs. Each model call takes inputs from the waiting requests in turn, one at a
time round the requests (those with the same parameters as the oldest), until the batch holds `max_batch`
inputs or `max_batch_tokens` tokens. So concurrent requests share forward passes, and a request of 10,000
inputs is answered in many batches that take turns with the others: a one-sentence request sent meanwhile
waits for about one batch, not for the whole big request. No request waits for a batch to fill.

An input too long for one model call (a long text of a task that reads windows: `tag`, `answer`) is run as
steps instead (the pipeline's `steps`, albert.tasks.batching.Steps): one model call of its windows per turn, its
request going to the back of the line after each, so a one-sentence request waits for one step, not for the text.

A batch that fails is re-run request by request, so one bad input fails only its own request.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    items: list[Any]
    costs: list[int]  # tokens per input
    parameters: dict[str, Any]
    future: Future = field(default_factory=Future)
    next: int = 0  # inputs taken into batches so far, in `order`
    order: list[int] = field(default_factory=list)  # its inputs shortest first: a big request's batches pad little
    results: list[Any] = field(default_factory=list)
    answered: int = 0
    failed: bool = False
    job: tuple[int, Generator[int, None, Any]] | None = None  # (input index, its steps) of a long input under way

    def __post_init__(self) -> None:
        self.order = sorted(range(len(self.items)), key=self.costs.__getitem__)
        self.results = [None] * len(self.items)

    @property
    def key(self) -> str:
        return json.dumps(self.parameters, sort_keys=True)

    @property
    def waiting(self) -> int:
        return len(self.items) - self.next


@dataclass
class BatchStats:
    """What the loop has done, for /health and /metrics."""

    batches: int = 0
    requests: int = 0
    inputs: int = 0
    tokens: int = 0
    on_batch: Callable[[int, int], None] | None = None  # (inputs, tokens) of each model call


class Batcher:
    """Runs `run(items, **parameters)` on one thread over the inputs of all waiting requests."""

    def __init__(self, run: Callable[..., list[Any]], max_batch: int = 64, max_batch_tokens: int = 16384,
                 stats: BatchStats | None = None, steps: Callable[..., Generator[int, None, Any]] | None = None,
                 steps_above: int = 0) -> None:
        """`steps(item, **parameters)`: run an input of more than `steps_above` tokens a model call at a time."""
        self.run = run
        self.steps, self.steps_above = steps, steps_above
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.stats = stats or BatchStats()
        self._requests: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.thread = threading.Thread(target=self._loop, name="albert-model", daemon=True)
        self.thread.start()

    # ----- callers -----
    def submit(self, items: list[Any], parameters: dict[str, Any], costs: list[int] | None = None) -> Future:
        """A future of the answers to `items` (in order); its exception is the pipeline's error."""
        request = _Request(list(items), list(costs or [1] * len(items)), dict(parameters))
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            if not request.items:
                request.future.set_result([])
                return request.future
            self._requests.append(request)
            self._cond.notify()
        return request.future

    @property
    def queued_inputs(self) -> int:
        """Inputs waiting for a model call (a request being run counts for what it has left)."""
        with self._cond:
            return sum(r.waiting for r in self._requests)

    def cancel(self, future: Future) -> None:
        """The request of `future` is no longer wanted (its client left, or the server is stopping): its inputs not
        yet taken into a model call leave the queue, and the future is cancelled."""
        with self._cond:
            self._requests = deque(r for r in self._requests if r.future is not future)
            future.cancel()

    def close(self, wait: bool = True) -> None:
        """Answer everything already submitted, then stop the thread; `wait=False`: return at once (the thread is
        a daemon: a model call still running ends with the process)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if wait:
            self.thread.join()

    # ----- the model thread -----
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._requests and not self._closing:
                    self._cond.wait()
                if not self._requests:
                    return
                stepped = self._take_step()
                batch = [] if stepped else self._take()
            if stepped:
                self._step(stepped)
            else:
                self._answer(batch)

    def _long(self, r: _Request) -> bool:
        """Whether `r`'s next input runs as steps (its inputs are in length order: so do all after it)."""
        return self.steps is not None and r.costs[r.order[r.next]] > self.steps_above

    def _take_step(self) -> _Request | None:
        """The first request in line if its turn is a step of a long input (it goes to the back of the line)."""
        r = self._requests[0]
        if r.job is None and not (r.waiting and self._long(r)):
            return None
        self._requests.rotate(-1)
        if r.job is None:
            index = r.order[r.next]
            r.next += 1
            r.job = (index, self.steps(r.items[index], **r.parameters))  # type: ignore[misc]
        return r

    def _step(self, r: _Request) -> None:
        """One model call of `r`'s long input; its answer when that was the last."""
        index, steps = r.job  # type: ignore[misc]
        try:
            tokens = next(steps)
        except StopIteration as done:
            with self._cond:
                r.job = None
                if not r.waiting and r in self._requests:
                    self._requests.remove(r)
            self.stats.inputs += 1
            self._record([(r, index)], [done.value])
            return
        except Exception as e:  # noqa: BLE001 - the request's own failure
            self._fail(r, e)
            return
        if tokens:  # a model call (0: other work, such as a part of the text's tokenization)
            self._count(0, tokens)

    def _take(self) -> list[tuple[_Request, int]]:
        """(request, input index) pairs of the next model call, taken in turn round the waiting requests."""
        key = self._requests[0].key
        ring = [r for r in self._requests if r.key == key and r.job is None]
        batch: list[tuple[_Request, int]] = []
        tokens = 0
        while len(batch) < self.max_batch:
            took = False
            for r in ring:
                if r.waiting == 0 or len(batch) >= self.max_batch or self._long(r):
                    continue
                index = r.order[r.next]
                cost = r.costs[index]
                if batch and tokens + cost > self.max_batch_tokens:
                    continue
                batch.append((r, index))
                r.next += 1
                tokens += cost
                took = True
            if not took:
                break
        # the requests served go to the back of the line (fully taken ones leave it): the next call starts with
        # those that waited
        served = {id(r) for r, _ in batch}
        rest = [r for r in self._requests if id(r) not in served]
        self._requests = deque(rest + [r for r in self._requests if id(r) in served and (r.waiting or r.job)])
        return batch

    def _answer(self, batch: list[tuple[_Request, int]]) -> None:
        items = [r.items[i] for r, i in batch]
        tokens = sum(r.costs[i] for r, i in batch)
        try:
            results = self._call(batch[0][0].parameters, items, tokens)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request(s), never lost
            requests = list(dict.fromkeys(r for r, _ in batch))
            if len(requests) > 1:  # find the request at fault: the others still get their answers
                for request in requests:
                    self._answer([(r, i) for r, i in batch if r is request])
                return
            self._fail(requests[0], e)
            return
        self._record(batch, results)

    def _record(self, batch: list[tuple[_Request, int]], results: list[Any]) -> None:
        for (r, i), result in zip(batch, results):
            if not r.failed:
                r.results[i] = result
                r.answered += 1
        for r in dict.fromkeys(r for r, _ in batch):
            if not r.failed and r.answered == len(r.items) and not r.future.done():  # done: cancelled meanwhile
                self.stats.requests += 1
                r.future.set_result(r.results)

    def _call(self, parameters: dict[str, Any], items: list[Any], tokens: int) -> list[Any]:
        results = self.run(items, **parameters)
        self._count(len(items), tokens)
        return results

    def _count(self, inputs: int, tokens: int) -> None:
        self.stats.batches += 1
        self.stats.inputs += inputs
        self.stats.tokens += tokens
        if self.stats.on_batch is not None:
            self.stats.on_batch(inputs, tokens)

    def _fail(self, request: _Request, error: Exception) -> None:
        request.failed = True
        with self._cond:  # its other inputs are not run
            if request in self._requests:
                self._requests.remove(request)
        if not request.future.done():
            request.future.set_exception(error)
