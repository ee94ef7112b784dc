# SHIP on the CIFAR-10 1k benchmark (./_base_cifar10-1k_dinov2-s14.py:
# frozen DINOv2-layout ViT-S/14, 224 px, train800 -> val200, the schedule and
# budget every method of the benchmark shares).
# Before training (frozen features of the training images):
#   python tools/analysis/ship_hierarchy.py CONFIG     # -> hierarchy.json
#   python tools/analysis/ship_prototypes.py CONFIG    # -> prototypes_k200.pth
_base_ = ['./_base_cifar10-1k_dinov2-s14.py']

ship_dir = 'work_dirs/ship_offline/dinov2-s14_cifar10-1k'
ship_offline = dict(descriptor='cls', threshold=0.95, num_images=1000, k=200,
                    prototype_descriptor='cls', pipeline='test')
model = dict(backbone=dict(prompt=dict(
    type='SHIPPrompter',
    starts=ship_dir + '/hierarchy.json',
    num_tokens=50,
    ssp_tokens=10,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=ship_dir + '/prototypes_k200.pth',
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    lambda_d=0.3,  # chosen on val (0.1: 69.5, 0.3: 72.0, 0.5: 67.0)
    dropout=0.1)))
