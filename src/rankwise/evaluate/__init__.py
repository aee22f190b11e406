"""Evaluation: IR metrics over runs and qrels (``retrieval``, through ir_measures), QA and citation metrics
(``qa``: SQuAD/HotpotQA normalisation), paired significance tests (``stats``).

``from rankwise import evaluate`` gives :func:`~rankwise.evaluate.retrieval.evaluate`. Once this package has been
imported, Python binds the name ``rankwise.evaluate`` to the package itself, so the package is made callable
(the same function) and the front door works whichever one a caller receives.
"""

import sys
import types
from typing import Any

from rankwise.evaluate.retrieval import evaluate, evaluate_per_query, parse_measure, parse_measures

__all__ = ["evaluate", "evaluate_per_query", "parse_measure", "parse_measures"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
