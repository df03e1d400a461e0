"""Helpers shared by fleetctl's test tiers (not part of the fleetctl package)."""
