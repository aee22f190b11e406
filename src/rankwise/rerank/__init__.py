"""Rerankers: ``rerank(queries, run, corpus, k) -> Run`` (the contract and its shared machinery in base.py).

Cross-encoders (``cross_encoder``), an LLM's P("True") (``llm``), hosted rerank APIs (``http``), and window
scoring of long passages (``windows``). Which class a config ``kind`` names is decided in one place,
:mod:`rankwise.build` (``RERANKERS``, ``register_reranker``).
"""
