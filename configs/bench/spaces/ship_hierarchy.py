# SHIP's hierarchy and prompt update on the bench backbone (issue item 4):
# the searched hierarchy (num_groups=None: threshold 0.95) against fixed
# group counts, and prompts attending in every block (mmship) against
# bypassing attention outside the PML block (the reference).
#   python tools/analysis/search_hparams.py \
#       configs/bench/ship_dinov2-s14_cifar10-1k.py \
#       --space configs/bench/spaces/ship_hierarchy.py --grid --trials 6 \
#       --seeds 0 1 --parallel 6
space = {
    'ship_offline.num_groups': dict(type='categorical', choices=[3, 5, None]),
    'model.backbone.prompt.prompt_update':
        dict(type='categorical', choices=['attend', 'bypass']),
}
