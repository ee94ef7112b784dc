# SHIP on ADE20K with ViT-B/16 + UperNet (512 x 512 crops, 160k iterations,
# batch 2 x 8 GPUs): the VPT-deep config of the same setting
# (../vpt/vpt-deep_vit-b16_upernet_8xb2-160k_ade20k-512x512.py: mmseg's
# ADE20K 160k recipe, frozen backbone initialised from
# timm:vit_base_patch16_224.augreg_in21k, neck and heads at lr 6e-5, prompts
# at lr 1e-3 without weight decay) with SHIP's prompts (docs/ship.md):
# 50 SIP tokens per group of the semantic hierarchy, 10 SSP tokens, AP in the
# last 2 groups, PML at block 11 (the last output block), decoupled attention.
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
# Another checkpoint:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/vit.pth
_base_ = ['../vpt/vpt-deep_vit-b16_upernet_8xb2-160k_ade20k-512x512.py']

# Settings of the hierarchy search and the prototypes (at the start of
# training and in the tools; CLI options of the tools win).  Dense task: the
# mean of the patch tokens describes a block better than its CLS token.
# num_groups=G picks the threshold that yields G groups.
ship_offline = dict(descriptor='mean_patch', threshold=0.95, num_groups=None,
                    num_images=1000, k=200, prototype_descriptor='cls')
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
    pml_block=11,
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    lambda_d=0.1,
    prompt_update='attend',
    dropout=0.1,
    init='vpt')
model = dict(backbone=dict(prompt=ship_prompt))
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
