"""The VideoRefer multi-agent data engine (the paper's VideoRefer-700K pipeline, which the authors did not release).

Five agents turn videos with raw captions into object-level training data in the VideoRefer-700K format:
Analyzer (nouns) -> Annotator (dynamics + appearance) -> Segmentor (Grounding DINO + SAM 2) -> Reviewer (region
caption vs. annotation) -> Refiner (detailed / short captions, multiple-choice QA). See `README.md` and `cli.py`.
"""
