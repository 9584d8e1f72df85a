"""Tiny random models built in code, for tests and offline use (`tiny_model`: VideoRefer, `tiny_sam2`: SAM 2)."""
