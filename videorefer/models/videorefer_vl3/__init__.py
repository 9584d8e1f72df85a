"""VideoRefer-VL3 (VideoLLaMA3-based, 7B and 2B): NaViT SigLIP encoder with 2D RoPE, MLP projector, frame pruning,
region encoder (crop re-encoding + k-means), Qwen2. `model_type` `videollama3_qwen2`."""
