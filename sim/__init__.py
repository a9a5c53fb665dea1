"""tickpath.sim: cocotb testbenches, drivers, monitors, scoreboards and runners."""
