"""The pure core: models, parsers, rules and decisions. No I/O, no typer/rich/paramiko/docker/requests."""
