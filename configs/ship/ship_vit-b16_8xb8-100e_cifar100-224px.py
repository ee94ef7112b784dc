# SHIP on CIFAR-100 (full training set, mmpretrain's CIFAR100 dataset) at
# 224 px: the VPT-deep config of the same setting
# (../vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py: frozen ViT-B/16 with
# timm in21k weights, linear head on the CLS token, AdamW lr 1e-3, wd 1e-4,
# 10 warm-up epochs then cosine, 100 epochs, batch 8 x 8) with SHIP's
# prompts.  Before training:
#   python tools/analysis/ship_hierarchy.py CONFIG     # -> hierarchy.json
#   python tools/analysis/ship_prototypes.py CONFIG    # -> prototypes_k200.pth
_base_ = ['../vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py']

ship_dir = 'work_dirs/ship_offline/vit-b16-in21k_cifar100-224'
ship_offline = dict(descriptor='cls', threshold=0.95, num_images=1000, k=200,
                    prototype_descriptor='cls', pipeline='test')
ship_prompt = dict(
    _delete_=True,
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
    lambda_d=0.1,
    dropout=0.1)
model = dict(backbone=dict(prompt=ship_prompt))
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
