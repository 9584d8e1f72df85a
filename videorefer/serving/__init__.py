"""Serving VideoRefer with other engines: `vllm/` is the vLLM plugin (registered by the `vllm.general_plugins` entry
point of pyproject.toml). Nothing here is imported by the rest of the package unless an engine asks for it."""
