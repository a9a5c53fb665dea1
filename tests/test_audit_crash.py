"""Crash test: a writer process killed with SIGKILL at random moments, restarted each time, loses
no record it acknowledged as durable; the journal reopens and verifies after every kill."""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from tickpath.host.audit import Journal, Kind, iter_records, verify

CHILD = r"""
import asyncio, random, sys
from tickpath.host.audit import Journal, Kind

path, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
journal = Journal.open(path, commit_interval=rnd.choice([0, 0.0005, 0.001, 0.003]),
                       checkpoint_interval=rnd.choice([0, 0.002, 0.05]))
print("open", journal.last_seq, flush=True)

def append():
    seq = journal.last_seq + 1          # one writer thread: this is the seq append returns
    got = journal.append(Kind.ORDER, order_id=seq, client_id=f"c{seq}", account="A",
                         symbol="AAPL", side="BS"[seq & 1], price=10_000 + seq, quantity=seq,
                         detail={"pad": "x" * (seq % 97)} if seq % 3 else None)
    assert got == seq
    return seq

if rnd.random() < 0.5:
    while True:                          # bursts, then wait for the disk, then acknowledge
        for _ in range(rnd.randint(1, 60)):
            seq = append()
        journal.wait_durable(seq)
        print(seq, flush=True)
else:
    async def client():
        while True:
            seq = append()
            await journal.wait_durable_async(seq)
            print(seq, flush=True)
    async def main():
        await asyncio.gather(*(client() for _ in range(8)))
    asyncio.run(main())
"""


def expected(rec) -> bool:
    seq = rec.seq
    return (rec.order_id, rec.client_id, rec.side, rec.price, rec.quantity) == (
        seq, f"c{seq}", "BS"[seq & 1], 10_000 + seq, seq) and rec.detail == (
        {"pad": "x" * (seq % 97)} if seq % 3 else None)


@pytest.fixture
def children():
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def crash_trials(tmp_path, children, trials: int, seed: int):
    rnd = random.Random(seed)
    journal_dir = tmp_path / "journal"
    acked = 0            # highest sequence number any child acknowledged as durable
    opened = 0
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(journal_dir),
                                 str(rnd.randrange(1 << 30))], stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        children.append(proc)
        lines: list[str] = []
        started = threading.Event()

        def read(p=proc, out=lines, started=started):
            for line in p.stdout:
                out.append(line)
                started.set()

        reader = threading.Thread(target=read)
        reader.start()
        # mostly while writing; sometimes while starting up or recovering the previous crash
        if rnd.random() < 0.8:
            assert started.wait(timeout=30), f"trial {trial}: child did not start"
            time.sleep(rnd.uniform(0, 0.3))
        else:
            time.sleep(rnd.uniform(0, 0.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
        assert proc.returncode == -signal.SIGKILL, f"trial {trial}: child ended by itself"
        for line in lines:
            if not line.endswith("\n"):
                continue
            if line.startswith("open "):
                opened += 1
                assert int(line.split()[1]) >= acked, f"trial {trial}: reopened short"
            else:
                acked = max(acked, int(line))
        # the next start must find every acknowledged record; check it here too
        report = verify(journal_dir) if (journal_dir / "journal.tpj").exists() else None
        if report is not None and not report.ok:
            assert report.problem is not None and report.problem.torn, (
                f"trial {trial}: {report.problem} {report.problems}")
        if report is not None:
            assert report.records >= acked, f"trial {trial}: lost acknowledged records"
    with Journal.open(journal_dir) as journal:
        assert journal.last_seq >= acked
    report = verify(journal_dir)
    assert report.ok, report.problem
    records = list(iter_records(journal_dir))
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    orders = [r for r in records if r.kind is Kind.ORDER]
    assert all(expected(r) for r in orders)
    assert {r.seq for r in orders} >= set(range(1, acked + 1)) - {
        r.seq for r in records if r.kind is Kind.RECOVERED}
    return acked, opened


def test_sigkill_loses_no_acknowledged_record(tmp_path, children):
    acked, opened = crash_trials(tmp_path, children, trials=10, seed=6)
    assert opened >= 5 and acked > 100          # the trials did write and acknowledge


@pytest.mark.long
def test_sigkill_soak(tmp_path, children):
    acked, opened = crash_trials(tmp_path, children, trials=150, seed=66)
    assert opened >= 100 and acked > 10_000
