"""A fast stand-in for vLLM 0.32's OpenAI API server (stdlib only); run ``server.py``, see its docstring."""
