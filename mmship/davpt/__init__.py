"""DA-VPT / DA-VPT+: distribution-aware visual prompt tuning
(docs/davpt.md)."""
from .features import (class_patch_weights, patch_grid, pool_class_features,
                       seg_class_features)
from .hooks import DAVPTMappingHook, davpt_prompter
from .losses import (ProxyAnchorLoss, class_sets_to_pos_mask,
                     labels_to_pos_mask, proxy_anchor_loss)
from .mapping import (CLASS_MEAN_NORMS, ClassMapping, cluster_classes,
                      compute_class_mapping, compute_class_means,
                      kmeans_input, load_mapping, save_mapping)
from .method import PLUS_PRESETS, DAVPTPrompter

__all__ = [
    'DAVPTPrompter', 'PLUS_PRESETS', 'CLASS_MEAN_NORMS', 'kmeans_input',
    'DAVPTMappingHook', 'davpt_prompter', 'ProxyAnchorLoss',
    'proxy_anchor_loss', 'labels_to_pos_mask', 'class_sets_to_pos_mask',
    'ClassMapping', 'cluster_classes', 'compute_class_mapping',
    'compute_class_means', 'load_mapping', 'save_mapping',
    'class_patch_weights', 'patch_grid', 'pool_class_features',
    'seg_class_features'
]
