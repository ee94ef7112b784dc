# SHIP on a VTAB-1k task (here: cifar, i.e. CIFAR-100 with 1000 training
# images): frozen ViT-B/16 (timm in21k weights), linear head on the CLS
# token, 224 px, the reference schedule (AdamW lr 1e-3, wd 1e-4, 10 warm-up
# epochs then cosine, 100 epochs, batch 64; docs/ship.md, "Reference
# hyper-parameters").
#
# The hierarchy (starts) and the attribute prototypes are left to the start
# of training: `python tools/train.py CONFIG` computes both with the frozen
# pretrained backbone and `ship_offline` below, saves them in
# <work_dir>/ship_offline/ and reuses them on --resume; checkpoints hold
# them, so tools/test.py CONFIG CKPT needs no offline file.  To inspect or
# fix them beforehand: tools/analysis/ship_hierarchy.py CONFIG (or
# --num-groups G) / ship_prototypes.py CONFIG, then name the files in
# model.backbone.prompt.starts / .prototypes (starts may also be a list:
# --cfg-options model.backbone.prompt.starts="[0,2,4,6,8,11]").
# The reference tuned the threshold (0.93-0.98) and the SIP size (5-200) per
# task: ship_offline.threshold / .num_groups and
# model.backbone.prompt.num_tokens.
# Selection is train800 -> val200; see ../_base_/datasets/vtab1k_224px.py
# for the final train800val200 -> test run and for other tasks.
_base_ = [
    '../_base_/models/vit-b16_vpt-deep_cls.py',
    '../_base_/datasets/vtab1k_224px.py',
    '../_base_/schedules/schedule_cls_100e.py',
    '../_base_/default_runtime_cls.py',
]

ship_offline = dict(descriptor='cls', threshold=0.95, num_images=1000, k=200,
                    prototype_descriptor='cls', pipeline='test')
ship_prompt = dict(
    _delete_=True,
    type='SHIPPrompter',
    starts=None,  # searched at the start of training
    sip=True,
    num_tokens=50,
    ssp=True,
    ssp_tokens=10,
    ap=True,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=None,  # computed at the start of training
    pml=True,
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    lambda_d=0.1,
    prompt_update='attend',
    dropout=0.1,
    init='vpt')
model = dict(
    backbone=dict(prompt=ship_prompt),
    head=dict(num_classes=100))
default_hooks = dict(logger=dict(interval=10))
