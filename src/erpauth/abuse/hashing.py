"""Bounded password hashing, on threads of its own.

Checking a password with argon2 costs tens of milliseconds of CPU and ~19 MiB of memory. The
checks run on a few hashing threads per process, not on the threads that serve requests:

- at most ``threads`` checks run at once, so a flood of sign-ins cannot occupy every request
  thread, and checks do not outnumber the cores and slow each other down; a few more wait,
  and the rest are turned away at once (``Saturated``);
- each hashing thread keeps its argon2 working memory from one check to the next
  (``WorkingMemory``), so the kernel does not map and zero 19 MiB again for every check, and
  gives it back to the system once it has had nothing to do for ``linger_seconds``.
"""

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from typing import TypeVar, cast

from erpauth.abuse.errors import Saturated
from erpauth.security.argon2_memory import WorkingMemory

T = TypeVar("T")
_Job = tuple[Callable[[WorkingMemory], object], Future]

# Long enough that steady sign-ins keep the memory, short enough that an idle process soon
# holds nothing for hashing.
LINGER_SECONDS = 1.0


def _ignore_outcome(waiting: asyncio.Future) -> None:
    if not waiting.cancelled():
        waiting.exception()


class HashingPool:
    """Runs checks on ``threads`` hashing threads, with ``queue`` more waiting at most.

    ``run`` blocks its caller until the check is done. A check beyond running plus waiting is
    refused at once; one that waited ``wait_seconds`` for a thread is refused then. Both
    raise Saturated, and the refused check never runs.
    """

    def __init__(
        self,
        threads: int,
        queue_size: int,
        wait_seconds: float,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self.threads = threads
        self._admitted = threading.BoundedSemaphore(threads + queue_size)
        self._wait_seconds = wait_seconds
        self._linger_seconds = linger_seconds
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._memories: list[WorkingMemory] = []
        self._start_lock = threading.Lock()
        self._closed = False

    @property
    def kept_bytes(self) -> int:
        """Working memory the hashing threads hold at this moment."""
        return sum(memory.kept_bytes for memory in self._memories)

    def run(self, work: Callable[[WorkingMemory], T]) -> T:
        """``work(memory)`` on a hashing thread; raises Saturated when there is no room."""
        future = self._submit(work)
        done, _ = futures.wait([future], timeout=self._wait_seconds)
        if not done and future.cancel():  # no thread took it, and now none will
            raise Saturated(retry_after=2)
        return cast(T, future.result())

    async def run_async(self, work: Callable[[WorkingMemory], T]) -> T:
        """``run`` for the event loop: waits for the hashing thread without blocking the loop."""
        future = self._submit(work)
        waiting = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({waiting}, timeout=self._wait_seconds)
            if not done and future.cancel():
                raise Saturated(retry_after=2)
            return cast(T, await waiting)
        except asyncio.CancelledError:
            if not future.cancel():
                # A thread has it already: it finishes, unheeded, and so does its outcome,
                # which asyncio would otherwise log as an error nobody retrieved.
                waiting.add_done_callback(_ignore_outcome)
            raise

    def _submit(self, work: Callable[[WorkingMemory], object]) -> Future:
        """Queues the check when there is room; its place is freed once it is done or dropped."""
        if not self._admitted.acquire(blocking=False):
            raise Saturated(retry_after=1)
        future: Future = Future()
        future.add_done_callback(lambda _: self._admitted.release())
        try:
            self._start()
        except BaseException:
            future.cancel()
            raise
        self._jobs.put((work, future))
        return future

    def close(self) -> None:
        """Ends the hashing threads once the checks in hand are done; frees their memory."""
        with self._start_lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for _ in workers:
            self._jobs.put(None)
        for worker in workers:
            worker.join(timeout=10)

    def _start(self) -> None:
        # On first use: processes that never check a password start no thread.
        if self._workers:
            return
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the hashing pool is closed")
            if self._workers:
                return
            for number in range(self.threads):
                memory = WorkingMemory()
                worker = threading.Thread(
                    target=self._serve, args=(memory,), name=f"hashing-{number}", daemon=True
                )
                self._memories.append(memory)
                self._workers.append(worker)
                worker.start()

    def _serve(self, memory: WorkingMemory) -> None:
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=self._linger_seconds)
                except queue.Empty:
                    memory.release()  # idle: the working memory goes back to the system
                    job = self._jobs.get()
                if job is None:
                    return
                work, future = job
                if not future.set_running_or_notify_cancel():
                    continue  # given up while it waited
                try:
                    future.set_result(work(memory))
                except BaseException as exc:  # handed to the caller, who raises it
                    future.set_exception(exc)
        finally:
            memory.release()
