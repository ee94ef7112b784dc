# SHIP on the CamVid benchmark (frozen DINOv2-layout ViT-S/14, linear head,
# the schedule and budget every method of the benchmark shares).  The
# hierarchy uses the mean patch token (the dense-task descriptor); PML runs in
# the output block.  One command: tools/train.py computes the hierarchy and
# the prototypes at the start (frozen features of the training images,
# `ship_offline` below), saves them in <work_dir>/ship_offline/ and reuses
# them on --resume.  Ablations: --cfg-options ship_offline.num_groups=G (the
# threshold that yields G groups), model.backbone.prompt.prompt_update=bypass.
_base_ = ['./_base_camvid_dinov2-s14.py', './_base_ship_dinov2-s14.py']

ship_offline = dict(descriptor='mean_patch', threshold=0.95, num_groups=None,
                    num_images=367, k=200, prototype_descriptor='patch',
                    pipeline='test')
model = dict(backbone=dict(prompt={{_base_.ship_prompt}}))
