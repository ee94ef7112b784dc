from .classifier import PromptedImageClassifier
from .seg_vit import PromptedSegViT
from .segmentor import PromptedEncoderDecoder
from .vit import PromptedViT

__all__ = ['PromptedSegViT', 'PromptedViT', 'PromptedEncoderDecoder',
           'PromptedImageClassifier']
