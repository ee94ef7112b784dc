from .attention import PromptAttention, cls_attention
from .backbone import PromptedBackboneMixin
from .method import (DELTA_TARGETS, BlockPlan, BlockResult, BlockSpec,
                     LowRank, PromptContext, TuningMethod)
from .prompter import Prompter, build_method
from .prompts import Carry, Insert, LearnablePrompts

__all__ = ['PromptAttention', 'cls_attention', 'PromptedBackboneMixin',
           'TuningMethod', 'BlockSpec', 'BlockPlan', 'BlockResult',
           'PromptContext', 'LowRank', 'DELTA_TARGETS', 'Prompter',
           'build_method', 'Carry', 'Insert', 'LearnablePrompts']
