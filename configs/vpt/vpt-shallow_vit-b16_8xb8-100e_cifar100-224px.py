# VPT-shallow: 50 prompts inserted once before block 0 and carried through
# every block; otherwise as the VPT-deep CIFAR-100 config.
_base_ = ['./vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py']
model = dict(
    backbone=dict(
        prompt=dict(
            type='Prompter',
            placements=[dict(kind='shallow', num_tokens=50)],
            dropout=0.1)))
