from typing import Optional, Sequence

from mmship.core.backbone import PromptedBackboneMixin
from mmship.core.method import TuningMethod


def is_prompted(backbone) -> bool:
    """Whether ``backbone`` runs through mmship's engine."""
    return isinstance(backbone, PromptedBackboneMixin)


def method_of(backbone) -> Optional[TuningMethod]:
    """The tuning method of a prompted backbone (None for other backbones
    and for a prompted one without a method)."""
    return backbone.prompter if is_prompted(backbone) else None


def check_patch_multiple(img_size: Sequence[int], patch_size) -> None:
    """Refuse image sizes that are not a multiple of the patch: the last row
    and column of patches would be silently padded or dropped."""
    patch = (patch_size, patch_size) if isinstance(patch_size, int) \
        else tuple(patch_size)
    if any(s % p for s, p in zip(img_size, patch)):
        raise ValueError(
            f'img_size {tuple(img_size)} is not a multiple of the patch size '
            f'{patch}; use e.g. '
            f'{tuple(max(p, round(s / p) * p) for s, p in zip(img_size, patch))}'
            f' (and crop/resize the data to it).')
