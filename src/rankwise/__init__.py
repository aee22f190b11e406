"""rankwise: retrieval-augmented generation where ranking is the lever."""

from rankwise.types import Dataset, Document, Qrels, Query, Run

__all__ = ["Dataset", "Document", "Qrels", "Query", "Run"]
__version__ = "0.1.0"
