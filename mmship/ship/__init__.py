"""SHIP: semantic hierarchical prompt tuning (docs/ship.md)."""
from .hierarchy import (AffinityMeter, block_descriptors, compute_affinity,
                        greedy_hierarchy, load_hierarchy)
from .method import (AttributePrompts, SHIPPrompter, attribute_mixture,
                       load_prototypes, prompt_matching_loss)

__all__ = ['SHIPPrompter', 'AttributePrompts', 'attribute_mixture',
           'prompt_matching_loss', 'load_prototypes', 'AffinityMeter',
           'block_descriptors', 'compute_affinity', 'greedy_hierarchy',
           'load_hierarchy']
