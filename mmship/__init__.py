"""mmship: semantic hierarchical (SHIP) and distribution-aware (DA-VPT)
prompt tuning for Vision Transformers, as an OpenMMLab extension.

``custom_imports=dict(imports=['mmship'])`` in a config registers everything.
"""
from mmengine.config.utils import MODULE2PACKAGE

from .version import __version__  # noqa: F401

# `_base_ = ['mmship::demo/...']`: mmengine resolves a `pkg::` prefix only
# for the packages it lists; the files are in mmship/.mim/configs (setup.py).
MODULE2PACKAGE.setdefault('mmship', 'mmship')

from .engine.safe_load import allow_mmengine_checkpoints  # noqa: E402

# Registration: hosts and task models, SHIP, DA-VPT, LoRA, the demo data set.
from . import core, datasets, davpt, engine, lora, models, ship  # noqa: F401,E402

allow_mmengine_checkpoints()
