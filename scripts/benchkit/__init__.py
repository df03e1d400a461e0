"""Shared parts of scripts/bench-drain and scripts/bench-upgrade: the bench lab, pollers, and pure figures."""
