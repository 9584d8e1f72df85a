"""Training utilities for VideoRefer (synthetic data, fine-tuning)."""
