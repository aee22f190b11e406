"""The RankRAG wing: one LLM LoRA-tuned on a blend of QA and a small fraction of ranking data, then used as both
the reranker (P("True")) and the generator.

- :mod:`.blend_config`, :mod:`.sources`, :mod:`.format`, :mod:`.blend`  the instruction blend;
- :mod:`.train_config`, :mod:`.answer_loss`, :mod:`.train`               LoRA training (answer-only loss);
- :mod:`.preset`                                                          one loaded model as reranker AND generator;
- :mod:`.study_eval`, :mod:`.sweep`, :mod:`.report`                       the ranking-fraction study and its table.
"""
