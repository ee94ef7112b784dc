"""LoRA: low-rank adaptation of the attention's projections (docs/lora.md),
written only against the method contract (``mmship/core/method.py``)."""
from .method import LoRA

__all__ = ['LoRA']
