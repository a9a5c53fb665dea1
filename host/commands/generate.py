"""``tickpath generate``: write a synthetic, internally consistent ITCH 5.0 feed."""

from __future__ import annotations

import click

from tickpath.host.cli import UserError


def _group(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--group: {text!r} is not GROUP:PORT (e.g. 239.1.1.1:30001)")
    return host, int(port)


@click.command(name="generate")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option("--messages", "-n", type=int, required=True,
              help="Messages to write, system events and stock directory included.")
@click.option("--symbols", "-s", type=int, default=8, show_default=True,
              help="Stocks in the directory (locates 1..S).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same seed and arguments, same bytes.")
@click.option("--mix", default=None, metavar="T=W,...",
              help="The whole body mix as integer weights over A F E C X D U P H I Q Y, "
                   "e.g. A=40,D=35,E=5,U=10 (default: a NASDAQ-like mix).")
@click.option("--session", default="TICKPATH01", show_default=True,
              help="MoldUDP64 session name (pcap only, up to 10 ASCII characters).")
@click.option("--group", default="239.1.1.1:30001", show_default=True, metavar="GROUP:PORT",
              help="Multicast destination (pcap only); the source is 127.0.0.1:30000.")
def command(out, messages, symbols, seed, mix, session, group):
    """Write a synthetic ITCH feed to OUT: a NASDAQ BinaryFILE, or, when OUT ends in
    .pcap, MoldUDP64 packets over UDP multicast in a nanosecond pcap."""
    from tickpath import generator

    try:
        kwargs = {} if mix is None else {"mix": generator.parse_mix(mix)}
        config = generator.GeneratorConfig(messages=messages, symbols=symbols, seed=seed,
                                           **kwargs)
        if out.lower().endswith(".pcap"):
            dst, port = _group(group)
            pcap_config = generator.PcapConfig(session=session, group=dst, port=port)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        if out.lower().endswith(".pcap"):
            summary = generator.write_pcap(config, out, pcap_config)
        else:
            summary = generator.write_binaryfile(config, out)
    except OSError as e:
        raise UserError(f"{out}: {e.strerror or e}") from None
    except generator.GeneratorError as e:
        raise UserError(str(e)) from None
    click.echo(summary.line(out), err=True)
