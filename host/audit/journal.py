"""The audit journal writer: append-only, hash-chained, group-committed.

::

    journal = Journal.open("var/audit", commit_interval=0.001)
    seq = journal.append(Kind.ORDER, order_id=7, client_id="c-1", account="A1", symbol="AAPL",
                         side="B", price=1_500_000, quantity=100, venue="OUCH")
    ...send the order...
    journal.wait_durable(seq)           # or: await journal.wait_durable_async(seq)
    ...acknowledge to the client...
    journal.close()

``append`` encodes the record, chains it to the previous one and puts it in a buffer; it does no
I/O and returns the record's sequence number. A committer thread writes the buffer durably (the
journal is written with ``O_DSYNC``) at most once per ``commit_interval`` (default 1 ms): every
record appended since the previous commit becomes durable together, and ``durable_seq``
advances to the last of them.
With ``committer=False`` there is no thread and the caller commits (:meth:`Journal.commit`, or
:meth:`Journal.wait_durable`, which commits if needed). After a commit the writer appends a
checkpoint line, at most once per ``checkpoint_interval`` (0: after every commit), and at close.

A failed write or fsync is final: the journal stops accepting records and every waiter gets
:class:`JournalError`; nothing is acknowledged that was not made durable.

Reopening (``Journal.open`` on an existing directory) walks the whole journal. A torn tail (a
crash's partial last record, see :mod:`.format`) is trimmed and a ``RECOVERED`` record notes it;
any other damage, a journal shorter than its checkpoints, or a tail that would cut into
checkpointed records raises :class:`JournalCorrupt` and nothing is changed. A journal directory
has one writer at a time (an exclusive ``flock``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import heapq
import mmap
import os
import threading
import time
from pathlib import Path
from typing import Any

from .format import (
    CHECKPOINT_FILE,
    HEADER_LEN,
    JOURNAL_FILE,
    Checkpoint,
    Kind,
    check_header,
    encode_record,
    format_checkpoint,
    genesis_hash,
    make_header,
    parse_checkpoint,
)
from .scan import Problem, ScanResult, scan

__all__ = ["Journal", "JournalError", "JournalCorrupt", "read_checkpoints"]


class JournalError(RuntimeError):
    """The journal cannot be used (failed write, closed, locked, not a journal)."""


class JournalCorrupt(JournalError):
    """The journal is damaged somewhere other than a provably torn tail."""

    def __init__(self, problem: Problem | str):
        super().__init__(str(problem))
        self.problem = problem


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(path: Path, *, trim_torn: bool = False,
                     hmac_key: bytes | None = None) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints of ``path`` and a list of problems (bad lines other than a torn last one).

    A torn last line (no newline, or a bad checksum at the very end) is ignored, and cut off if
    ``trim_torn``.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()          # b"" if the file ends with a newline
    points: list[Checkpoint] = []
    problems: list[str] = []
    offset = 0
    torn_at = None
    for number, line in enumerate(lines, 1):
        cp = parse_checkpoint(line, number)
        if cp is None:
            if number == len(lines) and not tail:
                torn_at = offset
            else:
                problems.append(f"checkpoint line {number}: damaged")
        else:
            if hmac_key is not None and not cp.mac_ok(hmac_key):
                problems.append(f"checkpoint line {number}: "
                                + ("not signed" if cp.mac is None else "bad HMAC signature"))
            if points and (cp.count < points[-1].count or cp.offset < points[-1].offset):
                problems.append(f"checkpoint line {number}: goes backwards (count {cp.count} "
                                f"after {points[-1].count})")
            points.append(cp)
        offset += len(line) + 1
    if tail:
        torn_at = offset
    if trim_torn and torn_at is not None:
        with path.open("r+b") as f:
            f.truncate(torn_at)
            os.fsync(f.fileno())
    return points, problems


class Journal:
    """An open journal directory; see the module docstring. Use :meth:`Journal.open`."""

    def __init__(self, directory: Path, fd: int, cp_fd: int, scan_result: ScanResult, *,
                 commit_interval: float, checkpoint_interval: float, hmac_key: bytes | None,
                 fsync: bool):
        self.directory = directory
        self.commit_interval = commit_interval
        self.checkpoint_interval = checkpoint_interval
        self._hmac_key = hmac_key
        self._fsync = os.fdatasync if fsync else (lambda fd: None)
        self._fd = fd                    # holds the flock
        # O_DSYNC: each pwrite returns once its data is durable, one system call per commit
        # (one release and re-take of the GIL instead of two).
        self._wfd = os.open(directory / JOURNAL_FILE, os.O_WRONLY | (os.O_DSYNC if fsync else 0))
        self._cp_fd = cp_fd
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._durable_cv = threading.Condition(self._lock)
        self._commit_lock = threading.Lock()
        self._seq = scan_result.count
        self._head = scan_result.head
        self._buf: list[bytes] = []
        self._written = scan_result.end      # file offset after the last written record
        self._durable = scan_result.count
        # per event loop: a heap of (seq, id, future) awaiting durability
        self._async_waiters: dict[asyncio.AbstractEventLoop,
                                  list[tuple[int, int, asyncio.Future]]] = {}
        self._failed: BaseException | None = None
        self._closing = False
        self._closed = False
        self._last_commit = 0.0
        self._last_cp_time = 0.0
        self._last_cp_count = -1
        self._thread: threading.Thread | None = None

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike, *, create: bool = True,
             commit_interval: float = 0.001, checkpoint_interval: float = 0.05,
             hmac_key: bytes | None = None, committer: bool = True,
             fsync: bool = True) -> Journal:
        """Open (or create) the journal in ``directory`` for appending, recovering a torn tail.

        ``fsync=False`` skips fsync (tests and benchmarks of the CPU cost only).
        """
        directory = Path(directory)
        path = directory / JOURNAL_FILE
        cp_path = directory / CHECKPOINT_FILE
        if not path.exists():
            if not create:
                raise JournalError(f"{directory}: no journal ({JOURNAL_FILE}) there")
            if directory.exists() and not directory.is_dir():
                raise JournalError(f"{directory}: not a directory")
            directory.mkdir(parents=True, exist_ok=True)
            header = make_header(os.urandom(16), time.time_ns())
            cls._create_file(path, header)
            if not cp_path.exists():
                line = format_checkpoint(0, HEADER_LEN, genesis_hash(header), time.time_ns(),
                                         hmac_key)
                cls._create_file(cp_path, line)
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{directory}: the journal is open for writing elsewhere") from None
        cp_fd = -1
        try:
            if not cp_path.exists():
                raise JournalCorrupt(f"{cp_path}: checkpoint file missing")
            checkpoints, problems = read_checkpoints(cp_path, trim_torn=True)
            if problems:
                raise JournalCorrupt(f"{cp_path}: {problems[0]}")
            result, trimmed = cls._recover(fd, path, checkpoints)
            cp_fd = os.open(cp_path, os.O_WRONLY | os.O_APPEND)
            journal = cls(directory, fd, cp_fd, result, commit_interval=commit_interval,
                          checkpoint_interval=checkpoint_interval, hmac_key=hmac_key,
                          fsync=fsync)
            if checkpoints and checkpoints[-1].count == result.count and not trimmed:
                journal._last_cp_count = result.count
        except BaseException:
            os.close(fd)
            if cp_fd >= 0:
                os.close(cp_fd)
            raise
        if trimmed:
            journal.append(Kind.RECOVERED, reason="torn tail trimmed", detail=trimmed)
        journal.commit(force_checkpoint=True)
        if committer:
            journal._thread = threading.Thread(target=journal._run, name="audit-committer",
                                               daemon=True)
            journal._thread.start()
        return journal

    @staticmethod
    def _create_file(path: Path, content: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    @staticmethod
    def _recover(fd: int, path: Path,
                 checkpoints: list[Checkpoint]) -> tuple[ScanResult, dict | None]:
        size = os.fstat(fd).st_size
        if size < HEADER_LEN:
            raise JournalCorrupt(f"{path}: {check_header(os.pread(fd, HEADER_LEN, 0))}")
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as buf:
            error = check_header(buf[:HEADER_LEN])
            if error:
                raise JournalError(f"{path}: {error}")
            result = scan(buf, genesis_hash(buf[:HEADER_LEN]), checkpoints)
        if result.problem is None:
            return result, None
        if not result.problem.torn:
            raise JournalCorrupt(result.problem)
        trimmed = {"offset": result.end, "bytes": size - result.end, "after_seq": result.count}
        os.ftruncate(fd, result.end)
        os.fsync(fd)
        result.size = result.end
        result.problem = None
        return result, trimmed

    # --- appending --------------------------------------------------------------------------

    def append(self, kind: Kind | int, *, ts_ns: int | None = None, **fields: Any) -> int:
        """Append one record; returns its sequence number (not yet durable).

        ``fields``: order_id, client_id, account, strategy, symbol, side, price, quantity,
        venue, reason, detail (see :func:`.format.encode_record`).
        """
        with self._lock:
            if self._failed is not None:
                raise JournalError(f"journal failed: {self._failed}") from self._failed
            if self._closing:
                raise JournalError("journal is closed")
            seq = self._seq + 1
            raw = encode_record(seq, time.time_ns() if ts_ns is None else ts_ns, kind,
                                self._head, **fields)
            self._head = hashlib.sha256(raw).digest()
            self._seq = seq
            self._buf.append(raw)
            if len(self._buf) == 1:
                self._work.notify()
        return seq

    @property
    def last_seq(self) -> int:
        """The sequence number of the last appended record."""
        return self._seq

    @property
    def durable_seq(self) -> int:
        """Every record up to this sequence number is on disk (fsynced)."""
        return self._durable

    @property
    def head(self) -> bytes:
        """The hash of the last appended record."""
        return self._head

    # --- committing -------------------------------------------------------------------------

    def commit(self, *, force_checkpoint: bool = False) -> int:
        """Write and fsync everything appended so far (in the caller); returns ``durable_seq``."""
        with self._commit_lock:
            with self._lock:
                if self._failed is not None:
                    raise JournalError(f"journal failed: {self._failed}") from self._failed
                chunks, self._buf = self._buf, []
                upto, head = self._seq, self._head
            if chunks:
                self._last_commit = time.monotonic()
                try:
                    data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
                    view = memoryview(data)
                    while view:
                        n = os.pwrite(self._wfd, view, self._written)
                        self._written += n
                        view = view[n:]
                except BaseException as exc:
                    self._fail(exc)
                    raise JournalError(f"journal write failed: {exc}") from exc
                self._advance(upto)
            now = time.monotonic()
            if upto != self._last_cp_count and (
                    force_checkpoint or now - self._last_cp_time >= self.checkpoint_interval):
                try:
                    line = format_checkpoint(upto, self._written, head, time.time_ns(),
                                             self._hmac_key)
                    os.write(self._cp_fd, line)
                    self._fsync(self._cp_fd)
                except BaseException as exc:
                    self._fail(exc)
                    raise JournalError(f"checkpoint write failed: {exc}") from exc
                self._last_cp_time = now
                self._last_cp_count = upto
            return self._durable

    def _advance(self, upto: int) -> None:
        with self._lock:
            self._durable = upto
            self._durable_cv.notify_all()
            loops = [loop for loop, heap in self._async_waiters.items() if heap[0][0] <= upto]
        for loop in loops:          # one wake-up per event loop, however many waiters
            try:
                loop.call_soon_threadsafe(self._wake_loop, loop)
            except RuntimeError:     # that loop is closed: nobody is waiting any more
                with self._lock:
                    self._async_waiters.pop(loop, None)

    def _wake_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """In ``loop``'s thread: resolve its waiters whose records are durable."""
        ready = []
        with self._lock:
            heap = self._async_waiters.get(loop, [])
            while heap and heap[0][0] <= self._durable:
                ready.append(heapq.heappop(heap)[2])
            if not heap:
                self._async_waiters.pop(loop, None)
        for fut in ready:
            _resolve(fut, None)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._failed is None:
                self._failed = exc
            self._durable_cv.notify_all()
            self._work.notify_all()
            waiters, self._async_waiters = self._async_waiters, {}
        for loop, heap in waiters.items():
            for _, _, fut in heap:
                try:
                    loop.call_soon_threadsafe(_resolve, fut,
                                              JournalError(f"journal failed: {exc}"))
                except RuntimeError:
                    pass

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._buf and not self._closing and self._failed is None:
                    self._work.wait()
                if self._failed is not None or (self._closing and not self._buf):
                    return
            delay = self._last_commit + self.commit_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                self.commit()
            except JournalError:
                return

    def wait_durable(self, seq: int, timeout: float | None = None) -> None:
        """Return once record ``seq`` is durable; :class:`JournalError` if it never will be,
        :class:`TimeoutError` after ``timeout`` seconds."""
        if self._thread is None:
            if self._durable < seq:
                self.commit()
            return
        with self._lock:
            ok = self._durable_cv.wait_for(
                lambda: self._durable >= seq or self._failed is not None, timeout)
            if self._durable >= seq:
                return
            if self._failed is not None:
                raise JournalError(f"journal failed: {self._failed}") from self._failed
            if not ok:
                raise TimeoutError(f"record {seq} not durable after {timeout} s")

    async def wait_durable_async(self, seq: int) -> None:
        """Await record ``seq`` being durable (for asyncio gateways)."""
        if self._thread is None:
            self.wait_durable(seq)
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._durable >= seq:
                return
            if self._failed is not None:
                raise JournalError(f"journal failed: {self._failed}") from self._failed
            fut = loop.create_future()
            heapq.heappush(self._async_waiters.setdefault(loop, []), (seq, id(fut), fut))
        await fut

    # --- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is buffered, write a final checkpoint, release the directory."""
        if self._closed:
            return
        with self._lock:
            self._closing = True
            self._work.notify_all()
        if self._thread is not None:
            self._thread.join()
        try:
            if self._failed is None:
                self.commit(force_checkpoint=True)
        finally:
            self._closed = True
            os.close(self._cp_fd)
            os.close(self._wfd)
            os.close(self._fd)     # releases the flock

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _resolve(fut: asyncio.Future, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
