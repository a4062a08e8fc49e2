"""Concurrent requests share the batch: jobs are submitted from any thread and sampled by one worker thread, which
alone calls the model. When a job waits and the worker is free, the worker waits up to `wait_s` after that job's
arrival (or after the worker got free, if later) for others of its group (`Job.group`: the same sampler, options
and generation settings), then runs the waiting jobs of that group, in arrival order, up to `max_rows` rows, in
one call; the others wait for the next. A job whose client left before its batch started (its future cancelled)
is dropped; one whose batch is running finishes with the batch, its answer discarded."""

import concurrent.futures
import logging
import threading
import time
from typing import Callable, NamedTuple, Optional

MAX_BATCH_ROWS = 16  # the server's defaults (`ecmh serve --max-batch-rows`, `--batch-wait-ms`)
BATCH_WAIT_MS = 20.0
log = logging.getLogger("ecmh.serve")


class ServerClosing(Exception):
    """The server stopped before the job's batch started."""


class Waiting(NamedTuple):
    job: object  # with `rows` and `group`
    future: concurrent.futures.Future
    arrived: float


class Batcher:
    """`run(jobs) -> results` (one per job, in order) called on batches of jobs by one worker thread.

    `on_batch(rows, seconds)` is told each batch's rows and duration (the server's metrics)."""

    def __init__(self, run: Callable[[list], list], max_rows: int, wait_s: float,
                 on_batch: Optional[Callable[[int, float], None]] = None):
        self.run, self.max_rows, self.wait_s, self.on_batch = run, max_rows, wait_s, on_batch
        self._waiting: list[Waiting] = []
        self._changed = threading.Condition()
        self._closed = False
        self.rows_in_flight = 0
        self._worker = threading.Thread(target=self._work, name="ecmh-batcher", daemon=True)
        self._worker.start()

    def submit(self, job) -> concurrent.futures.Future:
        if job.rows > self.max_rows:
            raise ValueError(f"a job of {job.rows} rows cannot fit a batch of {self.max_rows}")
        future = concurrent.futures.Future()
        with self._changed:
            if self._closed:
                future.set_exception(ServerClosing("the server is shutting down"))
                return future
            self._waiting.append(Waiting(job, future, time.monotonic()))
            self._changed.notify()
        return future

    def close(self, timeout: Optional[float] = None) -> None:
        """Take no more jobs; the batch in flight finishes, the jobs still waiting are refused (`ServerClosing`)."""
        with self._changed:
            self._closed = True
            refused, self._waiting = self._waiting, []
            self._changed.notify()
        for waiting in refused:
            waiting.future.set_exception(ServerClosing("the server is shutting down"))
        self._worker.join(timeout)

    def _work(self) -> None:
        free_since = time.monotonic()
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                group = self._waiting[0].job.group
                # from when the worker got free too: the clients answered by the last batch get to send their next
                deadline = max(self._waiting[0].arrived, free_since) + self.wait_s
                while not self._closed and self._rows(group) < self.max_rows and time.monotonic() < deadline:
                    self._changed.wait(deadline - time.monotonic())
                batch = self._take(group)
            if batch:
                self._run(batch)
                free_since = time.monotonic()

    def _rows(self, group) -> int:
        return sum(w.job.rows for w in self._waiting if w.job.group == group and not w.future.cancelled())

    def _take(self, group) -> list[Waiting]:
        """The waiting jobs of `group` that fit, in arrival order, marked running (cancelled ones dropped)."""
        batch, rows, left = [], 0, []
        for waiting in self._waiting:
            if waiting.job.group != group or rows + waiting.job.rows > self.max_rows:
                left.append(waiting)
            elif waiting.future.set_running_or_notify_cancel():
                batch.append(waiting)
                rows += waiting.job.rows
        self._waiting = left
        return batch

    def _run(self, batch: list[Waiting]) -> None:
        rows = sum(w.job.rows for w in batch)
        self.rows_in_flight = rows
        start = time.perf_counter()
        try:
            results = self.run([w.job for w in batch])
        except Exception as error:  # every job of the batch gets the error; the worker goes on
            log.exception("a batch of %d jobs failed", len(batch))
            for waiting in batch:
                waiting.future.set_exception(error)
        else:
            for waiting, result in zip(batch, results):
                waiting.future.set_result(result)
        finally:
            self.rows_in_flight = 0
            if self.on_batch is not None:
                self.on_batch(rows, time.perf_counter() - start)
