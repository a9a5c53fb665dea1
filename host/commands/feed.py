"""``tickpath feed publish|listen``: publish a MoldUDP64 feed with a re-request server, and
listen to one through any capture backend, recovering every lost packet."""

from __future__ import annotations

import ipaddress
import json
import sys
import time

import click

from tickpath.host.cli import UserError

_S = 1_000_000_000


def _addr(text: str, what: str, multicast: bool | None = None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not ADDR:PORT (e.g. 239.1.1.1:30001)") from None
    if multicast is True and not ip.is_multicast:
        raise UserError(f"{what}: {host} is not a multicast group (224.0.0.0/4)")
    return host, int(port)


def _seconds_ns(value: float | None, what: str) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise UserError(f"{what} must not be negative")
    return int(round(value * 1000)) * 1_000_000


def _read_messages(path: str) -> list[bytes]:
    """ITCH messages of a BinaryFILE or of a pcap of MoldUDP64 packets, in file order."""
    from tickpath.protocol import itch, pcap

    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if pcap.file_kind(head) == "pcap":
                f.seek(0)
                return [m for _ts, _d, p in pcap.iter_mold_messages(f) for m in p.messages]
            data = head + f.read()
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except pcap.PcapError as e:
        raise UserError(f"{path}: {e}") from None
    try:
        return [m for _pos, m in itch.iter_binaryfile_raw(data)]
    except itch.ItchError as e:
        raise UserError(f"{path}: not a BinaryFILE or pcap: {e}") from None


@click.group(name="feed")
def command():
    """Publish or listen to a MoldUDP64 market-data feed (multicast, with re-requests)."""


@command.command(name="publish")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--group", required=True, metavar="GROUP:PORT",
              help="Multicast group and port to publish to.")
@click.option("--rate", type=int, default=None,
              help="Messages per second (default: as fast as possible).")
@click.option("--burst", type=int, default=1000, show_default=True,
              help="Most messages sent at once by the pacer.")
@click.option("--rerequest-bind", default=None, metavar="ADDR:PORT",
              help="Serve re-requests on this unicast address (e.g. 127.0.0.1:30002).")
@click.option("--linger", type=float, default=5.0, show_default=True,
              help="Seconds to keep answering re-requests after end of session.")
@click.option("--interface", default="127.0.0.1", show_default=True,
              help="IPv4 address of the interface multicast leaves through.")
@click.option("--session", default="TICKPATH01", show_default=True,
              help="MoldUDP64 session name (up to 10 ASCII characters).")
@click.option("--heartbeat", type=float, default=1.0, show_default=True,
              help="Seconds of idleness before a heartbeat.")
@click.option("--mtu", type=int, default=1500, show_default=True,
              help="Link MTU; packets carry up to MTU - 28 bytes of UDP payload.")
@click.option("--generate", "generate", type=int, default=None, metavar="N",
              help="Publish N synthetic messages from the generator instead of FILE.")
@click.option("--seed", type=int, default=0, show_default=True, help="Generator seed.")
@click.option("--store", type=int, default=1 << 20, show_default=True,
              help="Messages kept for retransmission.")
def publish(file, group, rate, burst, rerequest_bind, linger, interface, session, heartbeat,
            mtu, generate, seed, store):
    """Publish FILE (a BinaryFILE or a pcap of MoldUDP64) to a multicast group, end the
    session, and keep answering re-requests for --linger seconds."""
    from tickpath.host.feed.publisher import Publisher, PublisherConfig

    group_addr = _addr(group, "--group", multicast=True)
    rr = _addr(rerequest_bind, "--rerequest-bind") if rerequest_bind else None
    try:
        ipaddress.IPv4Address(interface)
    except ValueError:
        raise UserError(f"--interface: {interface!r} is not an IPv4 address") from None
    if (file is None) == (generate is None):
        raise UserError("give a FILE or --generate N (one of them)")
    if generate is not None:
        from tickpath import generator
        try:
            messages = generator.iter_messages(generator.GeneratorConfig(messages=generate,
                                                                         seed=seed))
        except ValueError as e:
            raise UserError(f"--generate: {e}") from None
    else:
        messages = _read_messages(file)
    try:
        config = PublisherConfig(session=session, max_payload=mtu - 28, rate=rate,
                                 burst=burst, heartbeat_ns=_seconds_ns(heartbeat, "--heartbeat"),
                                 linger_ns=_seconds_ns(linger, "--linger"),
                                 store_capacity=store)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        pub = Publisher(group_addr, config, rerequest_bind=rr, interface=interface)
    except OSError as e:
        raise UserError(f"cannot open sockets: {e.strerror or e}") from None
    with pub:
        where = f", re-requests on {rr[0]}:{rr[1]}" if rr else ""
        click.echo(f"publishing to {group} via {interface}{where}", err=True)
        try:
            stats = pub.run(messages)
        except KeyboardInterrupt:
            stats = pub.stats
        secs = max(1, stats.finished_ns - stats.started_ns) / 1e9
        summary = {"messages": stats.messages, "packets": stats.packets, "bytes": stats.bytes,
                   "heartbeats": stats.heartbeats, "end_of_session": stats.end_of_session,
                   "send_errors": stats.send_errors, "next_sequence": pub.next_sequence,
                   "rerequests": pub.server.stats.as_dict()}
        click.echo(f"{stats.messages:,} messages in {stats.packets:,} packets in {secs:.2f} s "
                   f"({stats.messages / secs:,.0f} msgs/s); re-requests "
                   f"{pub.server.stats.requests:,} answered {pub.server.stats.answered:,} "
                   f"bad {pub.server.stats.bad:,}", err=True)
        click.echo(json.dumps(summary))


def _progress_printer(stream):
    tty = stream.isatty()
    last = [0]

    def show(listener, final: bool) -> None:
        st = listener.session.stats
        cap = listener.capture_stats
        line = (f"messages {st.delivered:,}  packets {st.packets:,}  gaps {st.gaps:,}  "
                f"recovered {st.recovered:,}  drops {cap.get('dropped', 0):,}  "
                f"dup {st.duplicate_packets:,}  lost {st.lost:,}  "
                f"missing {listener.session.missing_messages:,}")
        now = time.monotonic_ns()
        if tty:
            stream.write("\r" + line + ("\n" if final else ""))
        elif final or now - last[0] >= 2 * _S:
            stream.write(line + "\n")
            last[0] = now
        stream.flush()
    return show


@command.command(name="listen")
@click.option("--group", "groups", required=True, multiple=True, metavar="GROUP:PORT",
              help="Multicast group and port; give it twice for A/B feeds.")
@click.option("--backend", type=click.Choice(["socket", "ring", "xdp", "pcap"]),
              default="socket", show_default=True, help="Capture backend.")
@click.option("--rerequest", default=None, metavar="ADDR:PORT",
              help="Re-request server to recover gaps from (e.g. 127.0.0.1:30002).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every delivered message to this BinaryFILE.")
@click.option("--timeout", type=float, default=None,
              help="Give up after this many seconds (default: wait for end of session).")
@click.option("--interface", default="127.0.0.1", show_default=True,
              help="IPv4 address of the interface to join groups on (socket backend).")
@click.option("--ifname", default="lo", show_default=True,
              help="Network device for the ring and xdp backends.")
@click.option("--pcap", "pcap_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="The capture to replay (pcap backend).")
@click.option("--pacing", type=click.Choice(["asap", "file"]), default="asap",
              show_default=True, help="Replay pacing (pcap backend).")
@click.option("--session", default=None, help="Follow only this MoldUDP64 session.")
@click.option("--join-late", is_flag=True,
              help="Start at the first sequence seen instead of recovering from 1.")
@click.option("--recovery-timeout", type=float, default=10.0, show_default=True,
              help="Seconds before a gap that cannot be recovered is given up.")
@click.option("--gap-delay", type=float, default=None,
              help="Milliseconds a gap may wait for reordering or the other feed before it is "
                   "re-requested (default 1, or 20 with two groups).")
@click.option("--request-chunk", type=int, default=0, show_default=True,
              help="Ask for a long missing range in pieces of this many messages, side by "
                   "side (0: one request per range, continued after each answer).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def listen(groups, backend, rerequest, out, timeout, interface, ifname, pcap_path, pacing,
           session, join_late, recovery_timeout, gap_delay, request_chunk, quiet):
    """Join the feed, deliver every message once and in order, and exit when the end of
    session has been seen and everything before it delivered (non-zero if something could
    not be recovered). Prints a JSON summary on stdout, live counts on stderr."""
    from tickpath.host.capture import CaptureError, open_capture
    from tickpath.host.feed.listener import BinaryFileSink, Listener
    from tickpath.host.feed.session import MoldSession, SessionConfig

    addrs = [_addr(g, "--group", multicast=None) for g in groups]
    rr = _addr(rerequest, "--rerequest") if rerequest else None
    if backend == "pcap" and pcap_path is None:
        raise UserError("--backend pcap needs --pcap FILE")
    if gap_delay is None:
        gap_delay = 20.0 if len(addrs) > 1 else 1.0
    if gap_delay < 0:
        raise UserError("--gap-delay must not be negative")
    try:
        config = SessionConfig(session=session, first_sequence=None if join_late else 1,
                               gap_delay_ns=int(round(gap_delay * 1000)) * 1000,
                               rerequest=rr is not None, request_chunk=request_chunk,
                               recovery_timeout_ns=_seconds_ns(recovery_timeout,
                                                               "--recovery-timeout"))
    except ValueError as e:
        raise UserError(str(e)) from None
    group_text = [f"{a}:{p}" for a, p in addrs]
    try:
        if backend == "pcap":
            capture = open_capture("pcap", group_text, path=pcap_path, pacing=pacing)
        else:
            capture = open_capture(backend, group_text, interface=interface, ifname=ifname)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot open the {backend} capture: {e}") from None
    except Exception as e:        # a backend missing a kernel feature or library
        raise UserError(f"cannot open the {backend} capture: {e}") from None
    f = None
    try:
        if out is not None:
            try:
                f = open(out, "wb")
            except OSError as e:
                raise UserError(f"{out}: {e.strerror or e}") from None
        sink = BinaryFileSink(f) if f is not None else None
        progress = None if quiet else _progress_printer(sys.stderr)
        with capture, Listener(capture, MoldSession(config), groups=addrs, rerequest=rr,
                               sink=sink) as listener:
            try:
                result = listener.run(timeout_ns=_seconds_ns(timeout, "--timeout"),
                                      progress=progress)
            except KeyboardInterrupt:
                raise UserError("interrupted") from None
            except CaptureError as e:
                raise UserError(f"capture failed: {e}") from None
    finally:
        if f is not None:
            f.close()
    st = result.stats
    summary = {"result": result.reason, "complete": result.complete, "session": result.session,
               "messages": st["delivered"], "packets": st["packets"], "gaps": st["gaps"],
               "recovered": st["recovered"], "drops": result.capture.get("dropped", 0),
               "duplicates": st["duplicate_packets"], "requests": st["requests"],
               "lost": st["lost"], "next_sequence": result.next_sequence,
               "end_of_session": result.end_of_session,
               "missing": [list(r) for r in result.missing[:20]],
               "lost_ranges": [[a, b] for _s, a, b in result.lost_ranges[:20]],
               "seconds": round(result.seconds_ns / 1e9, 3)}
    click.echo(json.dumps(summary))
    if not result.ok:
        what = []
        if result.missing:
            what.append(f"{sum(b - a for a, b in result.missing):,} messages still missing "
                        f"(first {result.missing[0][0]})")
        if result.lost_ranges:
            what.append(f"{st['lost']:,} messages could not be recovered "
                        f"(first {result.lost_ranges[0][1]})")
        if not what:
            what.append("no end of session seen")
        raise UserError(f"{result.reason}: " + "; ".join(what))


if __name__ == "__main__":          # until "feed" is registered in tickpath.host.cli
    command(prog_name="tickpath feed")
