"""``tickpath decode FILE``: every ITCH message of a pcap or NASDAQ BinaryFILE as JSON lines.

The format is told from the content: a pcap magic (either byte order, micro- or nanosecond)
means Ethernet/IPv4/UDP/MoldUDP64 frames; anything else is read as a BinaryFILE.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections import Counter
from collections.abc import Iterator

import click

from tickpath.host.cli import UserError
from tickpath.protocol import itch
from tickpath.protocol.moldudp64 import MoldError, decode_packet
from tickpath.protocol.pcap import PcapError, file_kind, iter_pcap_records, parse_udp_frame

_CHUNK = 4096


class _Stats:
    def __init__(self) -> None:
        self.by_type: Counter[str] = Counter()
        self.packets = 0
        self.heartbeats = 0
        self.end_of_session = 0
        self.other_frames = 0


def _binaryfile_dicts(data: bytes, stats: _Stats) -> Iterator[dict]:
    for _offset, msg in itch.iter_binaryfile(data):
        stats.by_type[msg.type] += 1
        yield msg.to_dict()


def _pcap_dicts(path: pathlib.Path, stats: _Stats) -> Iterator[dict]:
    for pos, _ts, frame in iter_pcap_records(path):
        try:
            d = parse_udp_frame(frame)
        except PcapError:
            stats.other_frames += 1          # not IPv4/UDP (ARP, IGMP, TCP): not market data
            continue
        base = pos + d.payload_offset
        try:
            packet = decode_packet(d.payload)
        except MoldError as e:
            raise UserError(f"{path}: MoldUDP64 at file offset {base + (e.offset or 0)}: "
                            f"{e}") from None
        stats.packets += 1
        if packet.is_heartbeat:
            stats.heartbeats += 1
            continue
        if packet.is_end_of_session:
            stats.end_of_session += 1
            continue
        at = 20                              # message blocks start after the header
        for i, raw in enumerate(packet.messages):
            try:
                msg = itch.decode(raw, 0, len(raw))
            except itch.ItchError as e:
                raise UserError(f"{path}: ITCH at file offset {base + at + 2}: "
                                f"{str(e).split(': ', 1)[-1]}") from None
            stats.by_type[msg.type] += 1
            out = msg.to_dict()
            out["session"] = packet.session
            out["sequence"] = packet.sequence + i
            yield out
            at += 2 + len(raw)


def _write_lines(dicts: Iterator[dict]) -> None:
    out = sys.stdout
    dumps = json.dumps
    lines: list[str] = []
    for d in dicts:
        lines.append(dumps(d))
        if len(lines) >= _CHUNK:
            out.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        out.write("\n".join(lines) + "\n")
    out.flush()


@click.command("decode")
@click.argument("file", type=click.Path(path_type=pathlib.Path))
@click.option("--summary", is_flag=True,
              help="Print message counts per type (one JSON object) instead of the messages.")
def command(file: pathlib.Path, summary: bool) -> None:
    """Print every ITCH message of FILE (pcap or BinaryFILE) as one JSON object per line."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{file}: no such file") from None
    except OSError as e:
        raise UserError(f"{file}: cannot read: {e.strerror or e}") from None
    kind = file_kind(data[:4])
    stats = _Stats()
    if kind == "pcapng":
        raise UserError(f"{file}: pcapng is not supported; convert with "
                        "'editcap -F pcap' first")
    is_pcap = kind == "pcap"
    dicts = _pcap_dicts(file, stats) if is_pcap else _binaryfile_dicts(data, stats)
    try:
        if summary:
            for _ in dicts:
                pass
        else:
            _write_lines(dicts)
    except itch.ItchError as e:
        raise UserError(f"{file}: not a valid BinaryFILE: {e}") from None
    except PcapError as e:
        raise UserError(f"{file}: {e}") from None
    except BrokenPipeError:
        sys.stderr.close()                   # reader went away (| head): stop quietly
        return
    if is_pcap and stats.packets == 0 and stats.other_frames:
        raise UserError(f"{file}: no IPv4/UDP frames among {stats.other_frames} frames")
    if summary:
        report = {"format": "pcap" if is_pcap else "binaryfile",
                  "messages": sum(stats.by_type.values()),
                  "by_type": dict(sorted(stats.by_type.items()))}
        if is_pcap:
            report.update(packets=stats.packets, heartbeats=stats.heartbeats,
                          end_of_session=stats.end_of_session, other_frames=stats.other_frames)
        click.echo(json.dumps(report))
    elif stats.other_frames:
        click.echo(f"skipped {stats.other_frames} non-UDP frames", err=True)
