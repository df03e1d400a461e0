"""Transports: SSH, Docker, HTTP. They wrap library errors into fleetctl errors."""
