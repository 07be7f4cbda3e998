"""Data side: annotation readers, feature stores and pooling, text (tokenizer, vocabulary, GloVe),
datasets and collate, the synthetic world, and the validate / prepare / baseline commands.

Importing this package is cheap (no torch, no Lightning); import the submodules you need.
"""
from .errors import DataFormatError
from .readers import read_annotations
from .records import DataReport, Query

__all__ = ["DataFormatError", "DataReport", "Query", "read_annotations"]
