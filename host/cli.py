"""The ``tickpath`` command line.

Each sub-command lives in its own module under :mod:`tickpath.host.commands` and is imported
only when it runs, so ``tickpath --help`` stays fast and one command's imports (a simulator,
sockets) never slow another.  Errors meant for an operator are raised as
:class:`click.ClickException` (one line, non-zero exit), never as a traceback.
"""

from __future__ import annotations

import importlib

import click

# name -> (module under tickpath.host.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("decode", "Print every ITCH message of a pcap or BinaryFILE as JSON lines."),
    "book": ("book", "Replay an ITCH feed and print the final price-level book."),
    "match": ("match", "Run JSON-lines order actions through the matching engine."),
    "generate": ("generate", "Write a synthetic, internally consistent ITCH feed."),
    "feed": ("feed", "Publish or listen to a MoldUDP64 feed (multicast, with re-requests)."),
    "orders": ("orders", "Run orders through risk, journal, engine and positions; list open ones."),
    "risk": ("risk", "Check, show or reload a risk configuration (TOML)."),
    "positions": ("positions", "Positions and PnL per account and symbol, from the audit journal."),
    "kill": ("kill", "Kill switch: block new orders and cancel resting ones."),
    "unkill": ("kill", "Release the kill switch."),
    "audit": ("audit", "Verify, replay, tail and export the audit journal."),
    "gateway": ("gateway", "FIX 4.2 and OUCH 4.2 order entry through risk, journal and engine."),
    "demo": ("demo", "Decode and book the sample feed through the model and the gateware."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, _ = COMMANDS[name]
        mod = importlib.import_module(f"tickpath.host.commands.{module}")
        return mod.command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tickpath")
def main():
    """tickpath: FPGA co-designed low-latency trading appliance."""


class UserError(click.ClickException):
    """An error the operator can fix (bad file, bad input line): one line, exit status 1."""
