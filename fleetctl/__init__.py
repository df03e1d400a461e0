"""fleetctl: own a fleet of bare-metal GPU hosts serving LLMs with vLLM."""

__version__ = "0.1.0"
