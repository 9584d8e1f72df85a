"""Serving VideoRefer with other engines: `vllm/` is the vLLM plugin (registered by the `vllm.general_plugins` entry
point of pyproject.toml); `endpoint` holds the server's VideoRefer routes (the `vllm.endpoint_plugins` entry point,
started by `python -m videorefer.serve`); `protocol` is the server's request format, shared with `videorefer.client`
and `engines.remote` (it needs neither vLLM nor a web framework). Nothing here is imported by the rest of the package
unless an engine, the server or a client asks for it."""
