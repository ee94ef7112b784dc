from .attention import PromptAttention, cls_attention
from .prompter import Prompter, PromptContext, build_prompter
from .prompts import Carry, Insert, LearnablePrompts

__all__ = ['PromptAttention', 'cls_attention', 'Prompter', 'PromptContext',
           'build_prompter', 'Carry', 'Insert', 'LearnablePrompts']
