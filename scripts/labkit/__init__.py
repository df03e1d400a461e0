"""Test-lab kit for fleetctl: fake GPU hosts (stdlib only)."""
