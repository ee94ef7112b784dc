from . import lifecycle  # noqa: F401  (registers PromptCheckpointHook)
from .params import log_param_table, param_table
from .safe_load import allow_mmengine_checkpoints

__all__ = ['param_table', 'log_param_table', 'allow_mmengine_checkpoints']
