"""One module per ``tickpath`` sub-command; each defines a click command named ``command``."""
