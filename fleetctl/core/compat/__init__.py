"""Compatibility knowledge and checks: the matrix, deployment profiles, rules and reports. Pure: no I/O."""
