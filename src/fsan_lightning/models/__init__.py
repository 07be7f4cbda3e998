"""FSAN network parts, the assembled network, its loss terms and the builders (docs/model.md)."""

from .alignment import AlignmentMap, DotProductAlignment, FeatureSpaceAlignment
from .build import REGISTRIES, build_criterion, build_fsan, check_compatible, effective_weights
from .criterion import BaseMapSelfTrainingTerms, BindingTerms, FSANCriterion, MILTripletTerms, SAPTerms, SelfTrainingTerms, SiblingTerms, SwappedWordTerms, TripletTerms
from .encoders import CentredFeatureSpaceVideoEncoder, CentredVideoEncoder, FeatureSpaceVideoEncoder, TextEncoder, VideoEncoder, WordResidualTextEncoder
from .fsan import FSAN, AttachedTwoStageFSAN, FSANOutput, TwoStageFSAN
from .grounders import MaxSumGrounder, SCGrounder
from .heads import HeadOutput, MLPClipHead, MLPSegmentHead, window_softmax_pool
from .icim import ICIM, AttentionBlock, BottleneckGatedICIM, CentredLocalICIM, GatedAttentionBlock, GatedICIM, ICIMLayer, LocalICIM, LocalICIMLayer, TextSideICIM, TextSideICIMLayer, UnpositionedGatedICIM, UnpositionedICIM, UnpositionedLocalICIM
from .matching import BaseMapMatchingScore, CentredMatchingScore, JointMatchingScore, MatchingScore, PrintedMatchingScore
from .self_training import (BaseMapGatedSiblingPseudoMoments, BaseMapMaskedSiblingPseudoMoments,
                           BaseMapSiblingPseudoMoments, GatedSiblingPseudoMoments, MaskedSiblingPseudoMoments,
                           SiblingPseudoMoments)
from .training_pass import TrainingPass, run_training_pass

__all__ = [
    "FSAN", "ICIM", "REGISTRIES", "AlignmentMap", "AttentionBlock", "BindingTerms", "SiblingTerms", "JointMatchingScore", "SwappedWordTerms", "TextSideICIM", "TextSideICIMLayer", "UnpositionedICIM", "UnpositionedGatedICIM", "UnpositionedLocalICIM", "LocalICIM", "LocalICIMLayer", "CentredFeatureSpaceVideoEncoder", "CentredLocalICIM", "CentredMatchingScore", "CentredVideoEncoder",
    "DotProductAlignment", "FSANCriterion", "FSANOutput", "FeatureSpaceAlignment", "FeatureSpaceVideoEncoder",
    "GatedAttentionBlock", "GatedICIM", "BottleneckGatedICIM", "HeadOutput", "ICIMLayer", "MILTripletTerms", "MLPClipHead",
    "MLPSegmentHead", "MatchingScore", "MaxSumGrounder", "PrintedMatchingScore", "SAPTerms", "SCGrounder", "SelfTrainingTerms", "BaseMapSelfTrainingTerms", "SiblingPseudoMoments", "BaseMapSiblingPseudoMoments",
    "MaskedSiblingPseudoMoments", "BaseMapMaskedSiblingPseudoMoments",
    "GatedSiblingPseudoMoments", "BaseMapGatedSiblingPseudoMoments",
    "TextEncoder", "TrainingPass", "TwoStageFSAN", "AttachedTwoStageFSAN", "BaseMapMatchingScore", "TripletTerms", "VideoEncoder", "WordResidualTextEncoder", "build_criterion",
    "build_fsan", "check_compatible", "effective_weights", "run_training_pass", "window_softmax_pool",
]
