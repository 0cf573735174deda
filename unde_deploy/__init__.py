"""Deployment glue: role routing of runs onto the role hosts' Docker engines."""
