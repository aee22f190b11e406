"""Training: hard-negative mining (negatives.py) and rerankers (reranker.py). Heavy imports live in submodules."""
