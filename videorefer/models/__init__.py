"""The model families. Each folder holds one family's configuration, modeling and processing, like transformers'
`models/<name>/`; everything around the model (regions, prompts, API, demo) is shared and lives above."""

# Importing a family's package registers it (videorefer.families); every family is imported here.
from . import videorefer_qwen2, videorefer_vl3  # noqa: E402,F401
