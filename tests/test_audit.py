"""The audit journal: format, group commit, recovery, tampering found by verify, the commands."""

import asyncio
import csv
import json
import os
import random
import subprocess
import sys
import threading
import zlib

import pytest
from click.testing import CliRunner

from tickpath.host.audit import (
    FormatError,
    Journal,
    JournalCorrupt,
    JournalError,
    Kind,
    iter_records,
    verify,
)
from tickpath.host.audit.format import (
    CHECKPOINT_FILE,
    HEADER_LEN,
    JOURNAL_FILE,
    decode_record,
    encode_record,
)
from tickpath.host.audit.replay import replay
from tickpath.host.commands.audit import command as audit_cli
from tickpath.host.positions import Positions

FIELDS = dict(order_id=42, client_id="cl-ü-1", account="ACC1", strategy="mm", symbol="AAPL",
              side="B", price=1_500_100, quantity=300, venue="OUCH", reason="pass",
              detail={"tif": "day", "n": [1, 2]})


def fill(i: int) -> dict:
    rnd = random.Random(i)
    return dict(order_id=i, client_id=f"c{i}", account=rnd.choice(["A1", "A2"]),
                symbol=rnd.choice(["AAPL", "MSFT"]), side=rnd.choice("BS"),
                quantity=rnd.randint(1, 500), price=rnd.randint(9_000, 11_000) * 100,
                venue="MODEL", detail={"pad": "x" * rnd.randint(0, 40)} if i % 3 else None)


def make_journal(path, n=20, **kw):
    with Journal.open(path, **kw) as journal:
        for i in range(1, n + 1):
            journal.append(Kind.EXECUTED if i % 2 else Kind.ORDER, **fill(i))
    return list(iter_records(path))


def problem_of(path, **kw):
    report = verify(path, **kw)
    assert not report.ok
    return report.problem


def rewrite(path, data):
    (path / JOURNAL_FILE).write_bytes(data)


def journal_bytes(path):
    return bytearray((path / JOURNAL_FILE).read_bytes())


# --- format --------------------------------------------------------------------------------

def test_record_round_trip():
    raw = encode_record(7, 123_456_789, Kind.RISK, b"\x11" * 32, **FIELDS)
    rec = decode_record(raw, offset=99)
    assert rec.seq == 7 and rec.ts_ns == 123_456_789 and rec.kind is Kind.RISK
    assert rec.prev_hash == b"\x11" * 32 and rec.offset == 99 and rec.length == len(raw)
    for name, value in FIELDS.items():
        assert getattr(rec, name) == value, name
    assert zlib.crc32(raw[:-4]) == int.from_bytes(raw[-4:], "little")


def test_record_sides_and_empty_fields():
    class Side:
        name = "Sell"
    assert decode_record(encode_record(1, 0, Kind.KILL, bytes(32), side=Side())).side == "S"
    rec = decode_record(encode_record(1, 0, Kind.CONFIG, bytes(32)))
    assert (rec.side, rec.account, rec.detail, rec.price) == ("", "", None, 0)


@pytest.mark.parametrize("bad, match", [
    (dict(side="X"), "side"), (dict(account="a" * 70_000), "account"),
    (dict(quantity=-1, order_id=-5), "out of range"), (dict(price=1 << 63), "out of range"),
    (dict(detail={"x": "y" * (1 << 20)}), "more than"),
])
def test_record_rejects_bad_fields(bad, match):
    with pytest.raises(FormatError, match=match):
        encode_record(1, 0, Kind.ORDER, bytes(32), **bad)


# --- writing, durability, reopening --------------------------------------------------------

def test_append_durable_reopen_continues_chain(tmp_path):
    records = make_journal(tmp_path, 30)
    assert [r.seq for r in records] == list(range(1, 31))
    assert records[0].offset == HEADER_LEN
    for a, b in zip(records, records[1:], strict=False):
        assert b.prev_hash == a.hash and b.offset == a.offset + a.length
    with Journal.open(tmp_path) as journal:
        assert journal.durable_seq == journal.last_seq == 30
        seq = journal.append(Kind.KILL, reason="operator", detail={"scope": "global"})
        assert seq == 31
        journal.wait_durable(seq, timeout=5)
        assert journal.durable_seq >= 31
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert report.records == 31 and report.checkpoints_matched == report.checkpoints >= 3
    assert list(iter_records(tmp_path))[-1].prev_hash == records[-1].hash


def test_group_commit_batches_concurrent_writers(tmp_path):
    journal = Journal.open(tmp_path, commit_interval=0.002)
    commits = []
    advance = journal._advance
    journal._advance = lambda upto: (commits.append(upto), advance(upto))

    def writer(k):
        for i in range(300):
            journal.wait_durable(journal.append(Kind.ORDER, order_id=k * 1000 + i), timeout=10)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    assert journal.durable_seq == 1200
    assert commits == sorted(commits) and commits[-1] == 1200
    assert len(commits) < 1200 / 2          # records were committed in groups
    assert sorted(r.order_id for r in iter_records(tmp_path)) == sorted(
        k * 1000 + i for k in range(4) for i in range(300))


def test_async_wait_durable(tmp_path):
    async def main(journal):
        async def client(k):
            seqs = []
            for i in range(50):
                seq = journal.append(Kind.ORDER, order_id=k * 100 + i)
                await journal.wait_durable_async(seq)
                assert journal.durable_seq >= seq
                seqs.append(seq)
            return seqs
        return await asyncio.gather(*(client(k) for k in range(8)))

    with Journal.open(tmp_path) as journal:
        results = asyncio.run(main(journal))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 401))


def test_caller_commits_without_thread(tmp_path):
    journal = Journal.open(tmp_path, committer=False)
    seq = journal.append(Kind.ORDER, order_id=1)
    assert journal.durable_seq == 0 and (tmp_path / JOURNAL_FILE).stat().st_size == HEADER_LEN
    journal.wait_durable(seq)
    assert journal.durable_seq == 1 and (tmp_path / JOURNAL_FILE).stat().st_size > HEADER_LEN
    journal.close()
    assert verify(tmp_path).ok


def test_one_writer_at_a_time(tmp_path):
    with Journal.open(tmp_path):
        with pytest.raises(JournalError, match="open for writing elsewhere"):
            Journal.open(tmp_path)


def test_closed_journal_refuses_appends(tmp_path):
    journal = Journal.open(tmp_path)
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append(Kind.ORDER)


def test_failed_write_fails_waiters_and_appends(tmp_path):
    journal = Journal.open(tmp_path)
    os.close(journal._wfd)                 # the disk goes away under the committer
    journal._wfd = os.open(os.devnull, os.O_RDONLY)
    seq = journal.append(Kind.ORDER, order_id=1)
    with pytest.raises(JournalError, match="failed"):
        journal.wait_durable(seq, timeout=5)
    assert journal.durable_seq == 0
    with pytest.raises(JournalError, match="failed"):
        journal.append(Kind.ORDER)
    journal.close()


# --- torn tails and corruption on reopen ---------------------------------------------------

def test_every_torn_tail_is_trimmed_and_recorded(tmp_path):
    records = make_journal(tmp_path / "base", 6)
    whole = journal_bytes(tmp_path / "base")
    checkpoints = (tmp_path / "base" / CHECKPOINT_FILE).read_bytes()
    last = records[-1]
    # a crash after record 5 was durable and checkpointed, while record 6 was being written
    base = whole[:last.offset]
    cp5 = checkpoints.split(b"\n")
    for cut in range(1, last.length):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        rewrite(d, base + whole[last.offset:last.offset + cut])
        (d / CHECKPOINT_FILE).write_bytes(cp5[0] + b"\n")
        problem = problem_of(d)
        assert problem.torn and (problem.record, problem.offset) == (6, last.offset)
        with Journal.open(d) as journal:
            assert journal.last_seq == 6        # 5 kept + the RECOVERED note
        got = list(iter_records(d))
        assert [r.hash for r in got[:5]] == [r.hash for r in records[:5]]
        assert got[5].kind is Kind.RECOVERED
        assert got[5].detail == {"offset": last.offset, "bytes": cut, "after_seq": 5}
        assert verify(d).ok


def test_zero_filled_tail_is_torn(tmp_path):
    make_journal(tmp_path, 4)
    data = journal_bytes(tmp_path)
    rewrite(tmp_path, data + bytes(300))
    assert problem_of(tmp_path).torn
    with Journal.open(tmp_path):
        pass
    assert verify(tmp_path).ok and verify(tmp_path).records == 5


def test_middle_corruption_is_never_trimmed(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    data[records[8].offset + 60] ^= 0x01     # record 9 of 10: a valid record follows
    rewrite(tmp_path, data)
    with pytest.raises(JournalCorrupt, match="record 9 at byte offset"):
        Journal.open(tmp_path)
    assert journal_bytes(tmp_path) == data     # nothing changed


def test_tail_cut_below_checkpoint_is_not_trimmed(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    rewrite(tmp_path, data[:records[-1].offset + 10])    # the last record was checkpointed
    problem = problem_of(tmp_path)
    assert not problem.torn and "truncated" in problem.message
    with pytest.raises(JournalCorrupt):
        Journal.open(tmp_path)


def test_torn_checkpoint_line_is_ignored_and_trimmed(tmp_path):
    make_journal(tmp_path, 5)
    cp = tmp_path / CHECKPOINT_FILE
    cp.write_bytes(cp.read_bytes() + b"cp1 7 10")
    assert verify(tmp_path).ok
    with Journal.open(tmp_path):
        pass
    assert all(line.startswith(b"cp1 ") for line in cp.read_bytes().splitlines())
    assert verify(tmp_path).ok


# --- tampering found by verify, at the right place -----------------------------------------

def test_flip_any_byte_is_found_in_its_record(tmp_path):
    records = make_journal(tmp_path, 12)
    data = journal_bytes(tmp_path)
    rnd = random.Random(1)
    for rec in records:
        for at in {0, 3, 4, 8, 30, rec.length - 1, rnd.randrange(rec.length)}:
            tampered = bytearray(data)
            tampered[rec.offset + at] ^= 1 << rnd.randrange(8)
            rewrite(tmp_path, tampered)
            problem = problem_of(tmp_path)
            assert (problem.record, problem.offset) == (rec.seq, rec.offset), (rec.seq, at)


def test_flip_header_byte(tmp_path):
    make_journal(tmp_path, 3)
    data = journal_bytes(tmp_path)
    data[20] ^= 1                        # the journal id: the genesis hash changes
    rewrite(tmp_path, data)
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (0, 0) and "header" in str(problem)
    (tmp_path / CHECKPOINT_FILE).unlink()        # without checkpoints, the chain still breaks
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (1, HEADER_LEN)


def test_edit_with_fixed_checksum_breaks_the_chain(tmp_path):
    records = make_journal(tmp_path, 8)
    data = journal_bytes(tmp_path)
    rec = records[3]
    raw = bytearray(data[rec.offset:rec.offset + rec.length])
    raw[64:72] = (999_999_999).to_bytes(8, "little")          # the price
    raw[-4:] = zlib.crc32(raw[:-4]).to_bytes(4, "little")
    data[rec.offset:rec.offset + rec.length] = raw
    rewrite(tmp_path, data)
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (5, records[4].offset)
    assert "hash chain" in problem.message


def test_rewritten_chain_is_caught_by_checkpoint(tmp_path):
    records = make_journal(tmp_path, 8)
    data = journal_bytes(tmp_path)
    # edit the last record and fix its checksum: no later record to break, the checkpoint does
    rec = records[-1]
    raw = bytearray(data[rec.offset:])
    raw[72:80] = (1).to_bytes(8, "little")
    raw[-4:] = zlib.crc32(raw[:-4]).to_bytes(4, "little")
    rewrite(tmp_path, data[:rec.offset] + raw)
    problem = problem_of(tmp_path)
    assert problem.record == 8 and "checkpoint line" in problem.message


def test_deleted_record_is_found(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    rec = records[4]
    rewrite(tmp_path, data[:rec.offset] + data[rec.offset + rec.length:])
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (5, rec.offset)
    assert "sequence number 6, expected 5" in problem.message


def test_swapped_records_are_found(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    a, b = records[2], records[3]
    swapped = (data[:a.offset] + data[b.offset:b.offset + b.length]
               + data[a.offset:a.offset + a.length] + data[b.offset + b.length:])
    rewrite(tmp_path, swapped)
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (3, a.offset)
    assert "reordered" in problem.message


def test_truncation_mid_record_is_found(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    rewrite(tmp_path, data[:records[6].offset + 17])
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (7, records[6].offset)


@pytest.mark.parametrize("keep", [0, 1, 5, 9])
def test_truncation_at_a_record_boundary_is_found(tmp_path, keep):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    end = records[keep].offset
    rewrite(tmp_path, data[:end])
    problem = problem_of(tmp_path)
    assert (problem.record, problem.offset) == (keep + 1, end)
    assert f"ends after record {keep}" in problem.message and "truncated" in problem.message


def test_checkpoint_file_removed_or_edited(tmp_path):
    make_journal(tmp_path, 5)
    cp = tmp_path / CHECKPOINT_FILE
    lines = cp.read_bytes().splitlines(keepends=True)
    cp.write_bytes(lines[0].replace(b"cp1 0 64", b"cp1 0 65") + b"".join(lines[1:]))
    assert any("checkpoint line 1: damaged" in p for p in verify(tmp_path).problems)
    cp.unlink()
    assert any("checkpoint file missing" in p for p in verify(tmp_path).problems)


def test_hmac_signed_checkpoints(tmp_path):
    key = b"k" * 32
    make_journal(tmp_path, 5, hmac_key=key)
    assert verify(tmp_path, hmac_key=key).ok
    report = verify(tmp_path)
    assert report.ok and any("not checked" in n for n in report.notes)
    assert any("bad HMAC" in p for p in verify(tmp_path, hmac_key=b"wrong").problems)
    # a forger who truncates the journal and rewrites unsigned checkpoints to match is caught
    records = list(iter_records(tmp_path))
    rewrite(tmp_path, journal_bytes(tmp_path)[:records[2].offset])
    from tickpath.host.audit.format import format_checkpoint
    (tmp_path / CHECKPOINT_FILE).write_bytes(format_checkpoint(
        2, records[2].offset, records[1].hash, 0, None))
    assert verify(tmp_path).ok
    assert any("not signed" in p for p in verify(tmp_path, hmac_key=key).problems)


# --- replay equals positions ---------------------------------------------------------------

def test_replay_equals_positions_fed_live(tmp_path):
    live = Positions()
    with Journal.open(tmp_path) as journal:
        for i in range(1, 400):
            f = fill(i)
            journal.append(Kind.ORDER, **f)
            journal.append(Kind.ACCEPTED, order_id=i)
            journal.append(Kind.EXECUTED, **f)
            live.apply_fill(f["account"], f["symbol"], f["side"], f["quantity"], f["price"])
    assert list(replay(tmp_path).rows()) == list(live.rows())
    result = CliRunner().invoke(audit_cli, ["replay", "--journal", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == list(live.rows())


# --- the commands --------------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(audit_cli, [str(a) for a in args])


def test_cli_verify_intact_and_tampered(tmp_path):
    records = make_journal(tmp_path, 10)
    result = run("verify", "--journal", tmp_path)
    assert result.exit_code == 0 and result.output.startswith("ok: 10 records")
    data = journal_bytes(tmp_path)
    data[records[6].offset + 40] ^= 4
    rewrite(tmp_path, data)
    result = run("verify", "--journal", tmp_path)
    assert result.exit_code == 1
    assert f"record 7 at byte offset {records[6].offset}" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize("sub", [["verify"], ["replay"], ["tail"],
                                 ["export", "--csv", "/dev/null"]])
def test_cli_bad_input_is_one_line(tmp_path, sub):
    missing = run(*sub, "--journal", tmp_path / "nope")
    assert missing.exit_code == 1 and "no such directory" in missing.output
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / JOURNAL_FILE).write_bytes(os.urandom(300))
    result = run(*sub, "--journal", garbage)
    assert result.exit_code == 1 and "not a tickpath audit journal" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(*sub, "--journal", empty)
    assert result.exit_code == 1 and "no journal" in result.output
    (empty / JOURNAL_FILE).write_bytes(b"TPAU")
    short = run(*sub, "--journal", empty)
    assert short.exit_code == 1 and "shorter than" in short.output
    for r in (missing, result, short):
        assert len(r.output.strip().splitlines()) == 1 and r.exception.__class__ is SystemExit


def test_cli_replay_refuses_corrupt_journal(tmp_path):
    records = make_journal(tmp_path, 10)
    data = journal_bytes(tmp_path)
    data[records[2].offset + 50] ^= 1
    rewrite(tmp_path, data)
    result = run("replay", "--journal", tmp_path)
    assert result.exit_code == 1 and "record 3 at byte offset" in result.output


def test_cli_tail(tmp_path):
    make_journal(tmp_path, 25)
    result = run("tail", "--journal", tmp_path, "-n", "3")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [r["seq"] for r in lines] == [23, 24, 25]
    assert lines[-1]["client_id"] == "c25" and lines[-1]["kind"] == "EXECUTED"


def test_cli_tail_follow(tmp_path):
    make_journal(tmp_path, 3)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tickpath.host.commands.audit import command; command()",
         "tail", "--journal", str(tmp_path), "-n", "1", "--follow", "--poll", "0.01"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert json.loads(proc.stdout.readline())["seq"] == 3
        with Journal.open(tmp_path) as journal:
            for i in range(4, 9):
                journal.wait_durable(journal.append(Kind.ORDER, order_id=i))
        seqs = [json.loads(proc.stdout.readline())["seq"] for _ in range(5)]
        assert seqs == [4, 5, 6, 7, 8]
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_cli_export_csv(tmp_path):
    records = make_journal(tmp_path / "j", 15)
    out = tmp_path / "out.csv"
    result = run("export", "--journal", tmp_path / "j", "--csv", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 15
    for row, rec in zip(rows, records, strict=True):
        assert int(row["seq"]) == rec.seq and int(row["price"]) == rec.price
        assert row["hash"] == rec.hash.hex() and row["side"] == rec.side
        assert (json.loads(row["detail"]) if row["detail"] else None) == rec.detail
    assert run("export", "--journal", tmp_path / "j").exit_code == 1


def test_cli_export_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    records = make_journal(tmp_path / "j", 15)
    out = tmp_path / "out.parquet"
    result = run("export", "--journal", tmp_path / "j", "--parquet", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    assert table["seq"] == [r.seq for r in records]
    assert table["price"] == [r.price for r in records]
    assert table["kind"] == [r.kind.name for r in records]


def test_measure_script_runs(tmp_path):
    from tickpath.host.audit.measure import measure, measure_gateway
    result = measure(2000, str(tmp_path), 0.001)
    assert result["durable_records_per_s"] > 0 and result["verify_records_per_s"] > 0
    assert result["commit_latency_us"]["p50"] <= result["commit_latency_us"]["max"]
    assert measure_gateway(400, str(tmp_path), 0.001, 8)["records"] == 400
    assert list(tmp_path.iterdir()) == []
