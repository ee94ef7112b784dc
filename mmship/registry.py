"""mmship's registries.

Modules that serve both hosts are registered into mmseg's and mmpretrain's
MODELS (see ``register_both``); tuning methods (prompters, LoRA) live in
mmship's own registry, built by the prompted backbones from their
``prompt`` argument.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('mmship model', parent=MMENGINE_MODELS, scope='mmship',
                  locations=['mmship.models', 'mmship.core'])
METHODS = Registry('tuning method', scope='mmship',
                   locations=['mmship.core', 'mmship.ship', 'mmship.davpt',
                              'mmship.lora'])
HOOKS = Registry('mmship hook', parent=MMENGINE_HOOKS, scope='mmship',
                 locations=['mmship.davpt', 'mmship.engine.hooks'])


def register_both(cls=None, *, name=None):
    """Register a class into mmseg's and mmpretrain's MODELS (and mmship's)."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    def _register(cls):
        for registry in (SEG_MODELS, PRETRAIN_MODELS, MODELS):
            registry.register_module(name=name, module=cls)
        return cls

    return _register if cls is None else _register(cls)
