"""FSAN network modules: encoders, ICIM, alignment map, heads, and the training criterion."""

from .alignment import AlignmentMap
from .criterion import FSANCriterion
from .encoders import TextEncoder, VideoEncoder
from .fsan import FSAN, FSANOutput
from .heads import MLPGroundingHead, window_softmax_pool
from .icim import ICIM, AttentionBlock, ICIMLayer

__all__ = [
    "FSAN",
    "ICIM",
    "AlignmentMap",
    "AttentionBlock",
    "FSANCriterion",
    "FSANOutput",
    "ICIMLayer",
    "MLPGroundingHead",
    "TextEncoder",
    "VideoEncoder",
    "window_softmax_pool",
]
