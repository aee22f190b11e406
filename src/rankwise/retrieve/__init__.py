"""First-stage retrieval: BM25 (``bm25``), dense bi-encoder (``dense``), run fusion (``fusion``).

Import the submodule you need; this package imports nothing heavy on its own.
"""
