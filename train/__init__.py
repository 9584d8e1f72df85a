"""Training utilities for VideoRefer (synthetic data, fine-tuning)."""

import videorefer  # noqa: F401  (first: its library-noise filters must precede transformers' import)
