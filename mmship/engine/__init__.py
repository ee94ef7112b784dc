from . import lifecycle  # noqa: F401  (registers PromptCheckpointHook)
from .hooks import NonFiniteLossHook
from .params import log_param_table, param_table
from .safe_load import allow_mmengine_checkpoints

__all__ = ['NonFiniteLossHook', 'param_table', 'log_param_table',
           'allow_mmengine_checkpoints']
