# DA-VPT+'s tuned set (issue item 3): none, the paper's (b_V) and the
# reference code's (b_V, proj, fc2 and LN2 biases, LN1, CLS token), on the
# reference-faithful DA-VPT config.
#   python tools/analysis/search_hparams.py \
#       configs/bench/davpt-ref_dinov2-s14_cifar10-1k.py \
#       --space configs/bench/spaces/davpt_plus.py --grid --trials 3 \
#       --seeds 0 1 --parallel 6
space = {
    'model.backbone.prompt.plus':
        dict(type='categorical', choices=[None, 'paper', 'reference']),
}
