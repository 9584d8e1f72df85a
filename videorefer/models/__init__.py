"""The model families. Each folder holds one family's configuration, modeling and processing, like transformers'
`models/<name>/`; everything around the model (regions, prompts, API, demo) is shared and lives above."""
