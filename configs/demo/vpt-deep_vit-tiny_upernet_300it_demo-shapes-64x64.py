# The quick-start demo: VPT-deep on a tiny frozen ViT + UperNet, trained on
# the procedurally drawn demo set (python tools/make_demo_data.py) for 300
# iterations on the CPU, then evaluated (mIoU).  `python tools/demo.py` runs
# all of it.
_base_ = [
    '../_base_/models/upernet_vit-tiny_vpt-deep.py',
    '../_base_/datasets/demo_shapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_demo.py',
]
