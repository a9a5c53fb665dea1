"""tickpath.host: the appliance's software (capture, shim, risk, audit, gateways, CLI)."""
