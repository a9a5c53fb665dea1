import json
import subprocess
import sys
import time

from click.testing import CliRunner

from tickpath.host.commands.decode import command
from tickpath.protocol import itch
from tickpath.protocol.moldudp64 import encode_packet, heartbeat
from tickpath.protocol.pcap import pcap_bytes, udp_frame

FRAME_ARGS = dict(src_ip="127.0.0.1", dst_ip="233.54.12.45", sport=4000, dport=26477)


def _run(*args):
    return CliRunner().invoke(command, [str(a) for a in args])


def test_binaryfile_matches_itch(shared_data, bx_sample):
    path = shared_data / "itch" / "bx_20191230_sample.itch"
    start = time.perf_counter()
    r = _run(path)
    elapsed = time.perf_counter() - start
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    expected = [m.to_dict() for _, m in itch.iter_binaryfile(bx_sample)]
    assert len(lines) == 12012
    assert [json.loads(x) for x in lines] == expected
    assert elapsed < 2.0


def test_summary(shared_data):
    r = _run("--summary", shared_data / "itch" / "bx_20191230_sample.itch")
    s = json.loads(r.output)
    assert s["messages"] == 12012 and s["by_type"]["P"] == 5000 and s["by_type"]["A"] == 4997


def test_real_pcap(shared_data):
    r = _run(shared_data / "pcap" / "bx-itch50" / "OrderDeleteMessage.pcap")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert rows and all(d["type"] == "D" and d["session"] == "" and d["sequence"] == 0
                        for d in rows)
    assert rows[0]["order_reference_number"] == 2902330


def test_pcap_session_sequence_and_heartbeats(tmp_path, bx_sample):
    raw = [r for _, r in itch.iter_binaryfile_raw(bx_sample)][:5]
    frames = [udp_frame(encode_packet("BXSESS\0", 100, raw[:3]), **FRAME_ARGS),
              udp_frame(heartbeat("BXSESS", 103), **FRAME_ARGS),
              udp_frame(encode_packet("BXSESS", 103, raw[3:]), vlan=7, **FRAME_ARGS)]
    path = tmp_path / "feed.pcap"
    path.write_bytes(pcap_bytes([(i, f) for i, f in enumerate(frames)], nanosecond=False))
    r = _run(path)
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [(d["session"], d["sequence"]) for d in rows] == [("BXSESS", s)
                                                             for s in range(100, 105)]
    assert [d["type"] for d in rows] == [itch.decode(m).type for m in raw]


def test_malformed_itch_in_pcap_names_offset(tmp_path):
    frame = udp_frame(encode_packet("S", 1, [b"A" + bytes(10)]), **FRAME_ARGS)
    path = tmp_path / "bad.pcap"
    path.write_bytes(pcap_bytes([(0, frame)]))
    r = _run(path)
    assert r.exit_code != 0
    # 24 file header + 16 record header + 42 Eth/IPv4/UDP + 20 Mold + 2 length prefix
    assert str(path) in r.output and "file offset 104" in r.output


def test_missing_and_garbage_files(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\xde\xad\xbe\xef" * 50)
    truncated = tmp_path / "trunc.pcap"
    truncated.write_bytes(pcap_bytes([(0, udp_frame(b"x" * 30, **FRAME_ARGS))])[:-7])
    for path in (tmp_path / "missing.itch", garbage, truncated):
        r = CliRunner().invoke(command, [str(path)])
        assert r.exit_code != 0
        assert r.exception is None or isinstance(r.exception, SystemExit)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in r.output
    assert "offset" in CliRunner().invoke(command, [str(garbage)]).output


def test_entry_point_in_subprocess(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x05Zxxxx")
    p = subprocess.run([sys.executable, "-c",
                        "from tickpath.host.cli import main; main()", "decode", str(garbage)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "offset 2" in p.stderr
