"""The version of vrfam-rt (read by setup.cfg; stamped into manifests and run records)."""
__version__ = "0.1.0"
