# SHIP on CIFAR-100 (full training set, mmpretrain's CIFAR100 dataset) at
# 224 px: the VPT-deep config of the same setting
# (../vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py: frozen ViT-B/16 with
# timm in21k weights, linear head on the CLS token, AdamW lr 1e-3, wd 1e-4,
# 10 warm-up epochs then cosine, 100 epochs, batch 8 x 8) with SHIP's
# prompts.
# The hierarchy (starts) and the attribute prototypes are left to the start
# of training: `python tools/train.py CONFIG` computes both with the frozen
# pretrained backbone and `ship_offline` below, saves them in
# <work_dir>/ship_offline/ and reuses them on --resume; checkpoints hold
# them, so tools/test.py CONFIG CKPT needs no offline file.  To inspect or
# fix them beforehand: tools/analysis/ship_hierarchy.py CONFIG (or
# --num-groups G) / ship_prototypes.py CONFIG, then name the files in
# model.backbone.prompt.starts / .prototypes (starts may also be a list:
# --cfg-options model.backbone.prompt.starts="[0,2,4,6,8,11]").
_base_ = ['../vpt/vpt-deep_vit-b16_8xb8-100e_cifar100-224px.py']

ship_offline = dict(descriptor='cls', threshold=0.95, num_images=1000, k=200,
                    prototype_descriptor='cls', pipeline='test')
ship_prompt = dict(
    _delete_=True,
    type='SHIPPrompter',
    starts=None,  # searched at the start of training
    num_tokens=50,
    ssp_tokens=10,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=None,  # computed at the start of training
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    lambda_d=0.1,
    dropout=0.1)
model = dict(backbone=dict(prompt=ship_prompt))
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
