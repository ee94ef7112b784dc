"""Utilities: the environment report (``python -m mmship.utils.collect_env``,
``mmship.utils.env``) and configs that inherit ``mmship::`` files."""
from .config import drop_mmship_scope, read_config
from .env import package_versions, versions_line

__all__ = ['drop_mmship_scope', 'read_config', 'package_versions',
           'versions_line']
