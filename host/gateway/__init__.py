"""Order gateways: FIX 4.2 acceptor and OUCH 4.2 over SoupBinTCP server, both feeding one
:class:`~tickpath.host.gateway.hub.OrderHub` (the seam to the host order path)."""

from tickpath.host.gateway.fix import FixAcceptor, FixSessionConfig
from tickpath.host.gateway.hub import EngineSink, OrderHub, OrderSink, OrderState, Submission
from tickpath.host.gateway.ouch import OuchServer, OuchUser

__all__ = ["FixAcceptor", "FixSessionConfig", "OuchServer", "OuchUser", "OrderHub",
           "OrderSink", "EngineSink", "OrderState", "Submission"]
