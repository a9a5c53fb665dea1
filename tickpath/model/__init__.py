"""Golden models: pure Python, the reference every implementation is checked against."""
