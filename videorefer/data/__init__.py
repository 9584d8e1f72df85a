"""Data plumbing shared by training, the benchmarks and the data engine (none of which may import another).

- `jsonl`: resumable JSONL files (`read_jsonl`, `latest_by_id`, `JsonlWriter`)
- `sharding`: contiguous shards of a work list and their output files (`parse_shard`, `shard_items`,
  `shard_output_path`)
- `chat_client`: a minimal OpenAI-compatible chat client (`ChatClient`, `ChatError`, `image_data_url`)
- `synthetic`: the synthetic moving-shapes referring task (training data and a mini benchmark);
  `python -m videorefer.data.synthetic OUT_DIR` writes it
- `training`: training samples (VideoRefer-700K or official VL3 layout) -> inputs with labels (`build_example`)
- `atomic`: files and folders written whole or not at all (`write_text_atomic`, `publish_dir`, `remove_dir`)

Submodules are imported on use, so reading a JSONL file does not load PyAV or httpx.
"""
