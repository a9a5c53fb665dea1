"""Prometheus metrics of a running gateway (``prometheus-client``), on its own registry and
served over HTTP by ``tickpath gateway run --metrics 127.0.0.1:PORT``.

``tickpath_orders_total{gateway,action}``
    client actions into the order path (enter, cancel, replace; cancel-on-disconnect and mass
    cancels count as cancel).
``tickpath_rejects_total{source,reason}``
    refused actions: ``source="risk"`` with the risk reason (``max_qty``, ``killed_account``,
    ...), ``source="engine"`` with the engine's reject reason (``InvalidPrice``, ...).
``tickpath_fills_total{gateway}``, ``tickpath_filled_shares_total{gateway}``
    executions of our orders (each side of a match between two of our orders counts).
``tickpath_order_latency_seconds{gateway,action}``
    histogram, from the action reaching the hub to its acknowledgement written to the client
    (risk, journal append, engine, group commit made durable, routing).
``tickpath_kills_total{scope}``, ``tickpath_kill_time_to_last_cancel_seconds``
    kill switch engagements and the time from the command to the last cancel's event.
``tickpath_journal_records``, ``tickpath_journal_durable_records``
    the audit journal's last appended and last durable record numbers.

The figures are observations only: no decision reads them (floats are fine here).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tickpath.protocol.records import EventKind, Order, RejectReason

__all__ = ["GatewayMetrics", "LATENCY_BUCKETS"]

LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3,
                   50e-3, 0.1, 0.25, 1.0)


def _gateway(session: str) -> str:
    head, sep, _ = session.partition(":")
    return head if sep else "other"


class GatewayMetrics:
    """The gateway's metrics. ``path`` (an :class:`~tickpath.host.orders.OrderPath`) says
    whether a reject came from the risk checks; ``journal`` feeds the journal gauges."""

    def __init__(self, path: Any = None, journal: Any = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._path = path
        self.orders = Counter("tickpath_orders", "Client actions into the order path.",
                              ["gateway", "action"], registry=r)
        self.rejects = Counter("tickpath_rejects", "Refused actions by source and reason.",
                               ["source", "reason"], registry=r)
        self.fills = Counter("tickpath_fills", "Executions of our orders.", ["gateway"],
                             registry=r)
        self.filled_shares = Counter("tickpath_filled_shares", "Shares executed.", ["gateway"],
                                     registry=r)
        self.latency = Histogram("tickpath_order_latency_seconds",
                                 "Order in (hub) to acknowledgement out (written to the client).",
                                 ["gateway", "action"], buckets=LATENCY_BUCKETS, registry=r)
        self.kills = Counter("tickpath_kills", "Kill switch engagements.", ["scope"], registry=r)
        self.kill_time = Gauge("tickpath_kill_time_to_last_cancel_seconds",
                               "Last kill: command to the last cancel's event.", registry=r)
        self.kill_canceled = Gauge("tickpath_kill_orders_canceled",
                                   "Last kill: orders canceled.", registry=r)
        if journal is not None:
            Gauge("tickpath_journal_records", "Last appended journal record.",
                  registry=r).set_function(lambda: journal.last_seq)
            Gauge("tickpath_journal_durable_records", "Last durable journal record.",
                  registry=r).set_function(lambda: journal.durable_seq)
        self._server = None
        self._thread = None

    def observe(self, order: Order, ctx: Any, events: list, elapsed_ns: int) -> None:
        """An :attr:`OrderHub.observers` entry."""
        gateway = _gateway(ctx.session)
        action = order.action.name.lower()
        self.orders.labels(gateway, action).inc()
        self.latency.labels(gateway, action).observe(elapsed_ns / 1e9)
        risk_reason = getattr(self._path, "last_risk_reason", None)
        shares = fills = 0
        for e in events:
            kind = e.kind
            if kind is EventKind.Executed:
                fills += 1
                shares += e.shares
            elif kind is EventKind.Rejected:
                if risk_reason is not None:
                    self.rejects.labels("risk", str(risk_reason)).inc()
                else:
                    try:
                        name = RejectReason(e.reason).name
                    except ValueError:
                        name = chr(e.reason) if 32 < e.reason < 127 else str(e.reason)
                    self.rejects.labels("engine", name).inc()
        if fills:
            self.fills.labels(gateway).inc(fills)
            self.filled_shares.labels(gateway).inc(shares)

    def observe_kill(self, report: Any) -> None:
        self.kills.labels(report.scope).inc()
        self.kill_time.set(report.time_to_last_cancel_ns / 1e9)
        self.kill_canceled.set(report.orders_canceled)

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (a daemon thread); returns the port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
