"""mmship: semantic hierarchical (SHIP) and distribution-aware (DA-VPT)
prompt tuning for Vision Transformers, as an OpenMMLab extension.

``custom_imports=dict(imports=['mmship'])`` in a config registers everything.
"""
from .version import __version__  # noqa: F401
from .engine.safe_load import allow_mmengine_checkpoints

from . import core, datasets, engine, models  # noqa: F401,E402 (registration)

from . import davpt  # noqa: F401,E402 (DA-VPT prompter, loss, hook)

allow_mmengine_checkpoints()
