"""Services: the work a command does, over the core and the transports. No typer, no rich."""
