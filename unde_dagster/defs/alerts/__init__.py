"""Alerts: the run-failure sensor (failing checks alert from `defs/checks.py`)."""
