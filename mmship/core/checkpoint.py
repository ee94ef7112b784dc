"""Pretrained weights for the prompted backbones, checked key by key.

Sources: a timm checkpoint (``.pth``/``.bin``/``.safetensors``, or the
original JAX ``.npz``), an mmseg- or mmpretrain-style ViT checkpoint (whole
models too: the ``backbone.`` part is taken), or ``timm:<model name>`` to let
timm fetch the weights.  Keys are mapped through timm's layout to the host's,
the position table is resized (bicubic, no antialias, as mmpretrain and
DINOv2 do), and a missing, unexpected or misshapen key is an error that lists
them: the stock ``strict=False`` silence hides checkpoints that load nothing.
"""
import math
import os.path as osp
import re
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

# Key templates: (timm, mmseg, mmpretrain).  {i} is a block index, {p} a
# parameter name.  None: the host has no such tensor.
_KEY_TEMPLATES = [
    ('cls_token', 'cls_token', 'cls_token'),
    ('pos_embed', 'pos_embed', 'pos_embed'),
    ('patch_embed.proj.{p}', 'patch_embed.projection.{p}',
     'patch_embed.projection.{p}'),
    ('norm_pre.{p}', 'ln_pre.{p}', 'pre_norm.{p}'),
    ('blocks.{i}.norm1.{p}', 'layers.{i}.ln1.{p}', 'layers.{i}.ln1.{p}'),
    ('blocks.{i}.attn.qkv.{p}', 'layers.{i}.attn.attn.in_proj_{p}',
     'layers.{i}.attn.qkv.{p}'),
    ('blocks.{i}.attn.proj.{p}', 'layers.{i}.attn.attn.out_proj.{p}',
     'layers.{i}.attn.proj.{p}'),
    ('blocks.{i}.ls1.gamma', None, 'layers.{i}.attn.gamma1.weight'),
    ('blocks.{i}.norm2.{p}', 'layers.{i}.ln2.{p}', 'layers.{i}.ln2.{p}'),
    ('blocks.{i}.mlp.fc1.{p}', 'layers.{i}.ffn.layers.0.0.{p}',
     'layers.{i}.ffn.layers.0.0.{p}'),
    ('blocks.{i}.mlp.fc2.{p}', 'layers.{i}.ffn.layers.1.{p}',
     'layers.{i}.ffn.layers.1.{p}'),
    ('blocks.{i}.ls2.gamma', None, 'layers.{i}.ffn.gamma2.weight'),
    ('norm.{p}', 'ln1.{p}', 'ln1.{p}'),
    ('fc_norm.{p}', None, 'ln2.{p}'),
]
_FORMATS = ('timm', 'mmseg', 'mmpretrain')
#: timm tensors that are never part of a backbone (classifier heads, the
#: masked-modelling token).  Dropped explicitly, and logged.
_HEAD_KEYS = re.compile(r'^(head|head_dist|pre_logits|mask_token|dist_token)'
                        r'(\.|$)')
_FINGERPRINTS = {
    'timm': 'blocks.0.attn.qkv.weight',
    'mmseg': 'layers.0.attn.attn.in_proj_weight',
    'mmpretrain': 'layers.0.attn.qkv.weight',
}


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r'\{i\}', r'(?P<i>\d+)') \
        .replace(r'\{p\}', r'(?P<p>weight|bias)')
    return re.compile(f'^{pattern}$')


_RULES = {
    fmt: [(_template_regex(t[col]), t) for t in _KEY_TEMPLATES if t[col]]
    for col, fmt in enumerate(_FORMATS)
}


def convert_keys(state_dict: Dict[str, Tensor], src: str,
                 dst: str) -> Tuple[Dict[str, Tensor], List[str]]:
    """Rename a ViT state dict between layouts.  Returns the renamed dict and
    the source keys that have no counterpart in ``dst``."""
    if src == dst:
        return dict(state_dict), []
    col = _FORMATS.index(dst)
    out, unmapped = {}, []
    for key, value in state_dict.items():
        for regex, templates in _RULES[src]:
            match = regex.match(key)
            if match and templates[col]:
                out[templates[col].format(**match.groupdict())] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def detect_format(state_dict: Dict[str, Tensor]) -> str:
    for fmt, key in _FINGERPRINTS.items():
        if key in state_dict:
            return fmt
    raise ValueError(
        'Unrecognised checkpoint layout: expected timm (blocks.N...), mmseg '
        '(layers.N.attn.attn...) or mmpretrain (layers.N.attn.qkv...) ViT keys;'
        f' its keys begin {list(state_dict)[:6]}.')


def read_checkpoint(source: str, host=None) -> Dict[str, Tensor]:
    """The raw backbone state dict of a file or ``timm:<name>``."""
    if source.startswith('timm:'):
        return _read_timm_hub(source[len('timm:'):])
    if not osp.isfile(source):
        raise FileNotFoundError(
            f'Checkpoint {source!r} does not exist. Give a .pth/.safetensors/'
            f'.npz path or timm:<model name>.')
    if source.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(source)
    elif source.endswith('.npz'):
        state = _read_npz(source, host)
    else:
        # weights_only=False would run arbitrary pickles; ViT checkpoints
        # from timm / OpenMMLab load with the safe loader, full training
        # checkpoints too once mmengine's classes are allowed (see
        # mmship.engine.safe_load).
        from mmship.engine.safe_load import torch_load
        state = torch_load(source)
    for wrapper in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items()
                 if k.startswith('backbone.')}
    return state


def _read_timm_hub(name: str) -> Dict[str, Tensor]:
    import timm
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:  # network, unknown tag, missing weights
        raise RuntimeError(
            f'timm could not provide weights for {name!r} ({type(exc).__name__}'
            f': {exc}). Download the checkpoint where the network allows it '
            f'and give its file path instead.') from exc
    return model.state_dict()


def _read_npz(path: str, host) -> Dict[str, Tensor]:
    """Original JAX ViT checkpoints, read through timm's own npz loader into
    a timm ViT of the host's shape at the checkpoint's native grid."""
    import numpy as np
    from timm.models.vision_transformer import VisionTransformer, _load_weights
    if host is None:
        raise ValueError('Reading an .npz checkpoint needs the host model.')
    with np.load(path) as w:
        key = next((k for k in w.files if k.endswith('posembed_input/'
                                                     'pos_embedding')), None)
        if key is None:
            raise ValueError(f'{path} is not a JAX ViT checkpoint (no '
                             f'posembed_input).')
        grid = int(math.isqrt(w[key].shape[1] - 1))
    layer = host.layers[0]
    ops = host._block_ops[0]
    embed_dims = host.pos_embed.shape[-1]
    model = VisionTransformer(
        img_size=grid * host.patch_size, patch_size=host.patch_size,
        embed_dim=embed_dims, depth=len(host.layers), num_heads=ops.num_heads,
        mlp_ratio=_ffn_width(layer) / embed_dims, num_classes=0)
    _load_weights(model, path)
    return model.state_dict()


def _ffn_width(layer) -> int:
    return layer.ffn.layers[0][0].out_features


def resize_pos_embed(pos_embed: Tensor, grid: Tuple[int, int],
                     num_extra_tokens: int = 1) -> Tensor:
    """Resize a (1, extra + h*w, D) table to ``grid`` with bicubic
    interpolation, align_corners=False and no antialias."""
    extra, table = pos_embed[:, :num_extra_tokens], pos_embed[:,
                                                              num_extra_tokens:]
    side = math.isqrt(table.shape[1])
    if side * side != table.shape[1]:
        raise ValueError(f'Cannot resize a non-square position table of '
                         f'{table.shape[1]} entries.')
    if (side, side) == tuple(grid):
        return pos_embed
    table = table.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    table = F.interpolate(table, size=tuple(grid), mode='bicubic',
                          align_corners=False, antialias=False)
    table = table.flatten(2).transpose(1, 2).to(pos_embed.dtype)
    return torch.cat([extra, table], dim=1)


def load_pretrained(host, source: str, prefix: str = None) -> None:
    """Load ``source`` into a prompted host backbone; raise on any mismatch."""
    state = read_checkpoint(source, host)
    if prefix:
        state = {k[len(prefix):].lstrip('.'): v for k, v in state.items()
                 if k.startswith(prefix)}
    src = detect_format(state)
    dropped = sorted(k for k in state if _HEAD_KEYS.match(k)) \
        if src == 'timm' else []
    state = {k: v for k, v in state.items() if k not in dropped}
    state, unmapped = convert_keys(state, src, host.host_format)

    own = {k: v for k, v in host.state_dict().items()
           if not k.startswith('prompter.')}
    # A final norm the host config switched off (mmseg's ViT-B UperNet has
    # final_norm=False) is a choice of the config, not a misfit.
    if 'ln1.weight' not in own:
        dropped += [k for k in ('ln1.weight', 'ln1.bias') if k in state]
        state.pop('ln1.weight', None)
        state.pop('ln1.bias', None)
    if 'pos_embed' in state and 'pos_embed' in own:
        pos = state['pos_embed']
        # timm/OpenMMLab tables carry one CLS entry before the h*w grid.
        src_extra = 0 if math.isqrt(pos.shape[1])**2 == pos.shape[1] else 1
        pos = resize_pos_embed(pos, host.pos_grid, src_extra)
        pos = pos[:, max(src_extra - host.num_extra_tokens, 0):]
        if pos.shape != state['pos_embed'].shape:
            print_log(f'Resized pos_embed {tuple(state["pos_embed"].shape)} '
                      f'-> {tuple(pos.shape)}', logger='current')
        state['pos_embed'] = pos

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(unmapped) | (set(state) - set(own)))
    misshapen = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model '
                       f'{tuple(own[k].shape)}' for k in set(state) & set(own)
                       if state[k].shape != own[k].shape)
    if missing or unexpected or misshapen:
        lines = [f'Checkpoint {source!r} ({src} layout) does not fit '
                 f'{type(host).__name__} ({host.host_format} layout):']
        for title, keys in (('missing in checkpoint', missing),
                            ('unexpected in checkpoint', unexpected),
                            ('shape mismatch', misshapen)):
            if keys:
                lines.append(f'  {title} ({len(keys)}): ' +
                             ', '.join(keys[:20]) +
                             (' ...' if len(keys) > 20 else ''))
        lines.append('  Check arch/embed_dims/num_layers/patch_size/'
                     'final_norm/layer_scale against the checkpoint.')
        raise ValueError('\n'.join(lines))
    host.load_state_dict(state, strict=False)
    if dropped:
        print_log(f'Not loaded (not part of this backbone): {dropped}',
                  logger='current')
    print_log(f'Loaded {len(state)} backbone tensors from {source} '
              f'({src} layout)', logger='current')
