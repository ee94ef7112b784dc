"""Configs that inherit mmship's shipped configs (``mmship::``)."""
from mmengine.config import Config


def drop_mmship_scope(cfg: Config) -> Config:
    """Remove the ``_scope_='mmship'`` marks of a config that inherits
    ``mmship::`` files; returns ``cfg`` (changed in place).

    mmengine marks every dict that comes from a ``pkg::`` base with
    ``_scope_=pkg``, so that it is built from that package's registries.
    mmship's modules, though, live in mmseg's and mmpretrain's registries
    (with everything else a config names: heads, data sets, transforms,
    metrics, hooks), and the config's ``default_scope`` ('mmseg' or
    'mmpretrain', set by mmship's default runtimes) says which.  Without the
    mark every dict is built in that scope, as for a config in the
    repository.  The tools (``mmship.engine.launch.load_config``) call this;
    call it yourself when you load such a config for ``mmseg.apis`` /
    ``mmpretrain.apis``.
    """

    def strip(node):
        if isinstance(node, dict):
            if node.get('_scope_') == 'mmship':
                del node['_scope_']
            for value in node.values():
                strip(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                strip(value)

    for key in list(cfg.keys()):
        strip(cfg[key])
    return cfg


def read_config(path: str) -> Config:
    """``Config.fromfile(path)`` for configs that may inherit ``mmship::``
    files, ready for ``mmseg.apis.init_model`` / mmpretrain's inferencers
    (``import mmship`` first registers the ``mmship::`` prefix; this module
    does it)."""
    import mmship  # noqa: F401  (registration, the `mmship::` prefix)
    return drop_mmship_scope(Config.fromfile(path))
