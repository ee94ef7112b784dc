"""The method contract suite: every tuning method, on both hosts.

A new method gets the whole suite by adding one entry to ``METHODS``:
``name -> (prompt config, targets it needs or None)``.
"""
import pytest
import torch

from mmship.core.method import TuningMethod
from mmship.registry import METHODS as REGISTRY
from tiny import pretrain_pair, seg_pair

D = 32


def _labels(batch, num_classes=4):
    return dict(labels=torch.arange(batch) % num_classes,
                num_classes=num_classes)


METHODS = {
    'vpt-shallow': (dict(type='Prompter', dropout=0.0, placements=[
        dict(kind='shallow', num_tokens=3)]), None),
    'vpt-deep': (dict(type='Prompter', dropout=0.0, placements=[
        dict(kind='deep', num_tokens=3)]), None),
    'ship': (dict(type='SHIPPrompter', starts=[0, 2, 3], num_tokens=3,
                  ssp_tokens=2, ap_groups=2, ap_tokens=2, pml_tokens=3,
                  prototypes=torch.randn(5, D), dropout=0.0), None),
    'davpt': (dict(type='DAVPTPrompter', num_classes=4, num_tokens=3,
                   num_proxies=4, proxy_num_tokens=5, dropout=0.0), _labels),
    'davpt-plus-reference': (dict(type='DAVPTPrompter', num_classes=4,
                                  num_tokens=3, num_proxies=4,
                                  proxy_num_tokens=5, plus='reference',
                                  dropout=0.0), _labels),
    'lora': (dict(type='LoRA', rank=2, alpha=4.0), None),
}
HOSTS = {'seg': seg_pair, 'pretrain': pretrain_pair}
CASES = [(m, h) for m in METHODS for h in HOSTS]


def _build(method, host, **kw):
    """(stock host, prompted twin with the same weights)."""
    return HOSTS[host](prompt=METHODS[method][0], **kw)


def _train_forward(twin, method, img):
    _, targets = METHODS[method]
    twin.train()
    return twin.forward_with_losses(
        img, targets(img.shape[0]) if targets else None)


def _randomise(method_module):
    """Move every parameter off its init (zero deltas would hide bugs)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in method_module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_every_registered_method_is_in_the_suite():
    registered = {name for name, cls in REGISTRY.module_dict.items()
                  if issubclass(cls, TuningMethod)}
    covered = {METHODS[m][0]['type'] for m in METHODS}
    assert registered <= covered | {'TuningMethod'}, \
        f'add {sorted(registered - covered)} to METHODS'


@pytest.mark.parametrize('method,host', CASES)
def test_method_free_run_equals_the_host(method, host):
    """The frozen host's features come back exactly with the method off."""
    plain, twin = _build(method, host)
    _randomise(twin.prompter)
    img = torch.randn(2, 3, 32, 32)
    ours, = twin.forward_intermediates(img, [-1], norm=True,
                                       with_method=False)
    want = plain(img)[-1]   # the last block, through the final norm
    if host == 'seg':       # NCHW patch tokens
        ours = ours[:, 1:].transpose(1, 2).reshape(want.shape)
    else:                   # the CLS token
        ours = ours[:, 0]
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(twin(img)[-1], plain(img)[-1], atol=1e-4)


@pytest.mark.parametrize('method,host', CASES)
def test_only_the_methods_parameters_train_and_all_get_gradients(
        method, host):
    """requires_grad is the method's parameters (and the host parts it
    names); one training step reaches every one of them, so DDP with
    find_unused_parameters=False works."""
    _, twin = _build(method, host)
    method_module = twin.prompter
    _randomise(method_module)
    trainable = {n for n, p in twin.named_parameters() if p.requires_grad}
    own = {f'prompter.{n}' for n, _ in method_module.named_parameters()}
    assert own <= trainable
    host_part = trainable - own
    assert bool(host_part) == bool(method_module.host_parts)
    feats, losses = _train_forward(twin, method, torch.randn(4, 3, 32, 32))
    loss = sum(f.float().mean() for f in feats) + sum(losses.values())
    loss.backward()
    unused = [n for n, p in twin.named_parameters()
              if p.requires_grad and (p.grad is None or
                                      not torch.isfinite(p.grad).all())]
    assert not unused, f'parameters without a gradient: {unused}'


@pytest.mark.parametrize('method,host', CASES)
def test_state_dict_round_trip(method, host):
    _, a = _build(method, host)
    _randomise(a.prompter)
    _, b = _build(method, host)
    b.load_state_dict(a.state_dict())
    img = torch.randn(2, 3, 32, 32)
    for x, y in zip(a(img), b(img)):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize('method', list(METHODS))
def test_bf16_forward_is_finite_and_close(method):
    _, twin = _build(method, 'seg')
    _randomise(twin.prompter)
    img = torch.randn(2, 3, 32, 32)
    full = twin(img)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        half = twin(img)
    feats, losses = _train_forward(twin, method, img)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        feats16, losses16 = _train_forward(twin, method, img)
    for x, y in zip(full, half):
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), x, atol=0.1, rtol=0.05)
    assert set(losses) == set(losses16)
    for k in losses:
        torch.testing.assert_close(losses16[k].float(), losses[k],
                                   atol=0.05, rtol=0.05)


@pytest.mark.parametrize('method', ['vpt-deep', 'ship', 'lora'])
def test_compiled_blocks_equal_eager(method):
    """compile_blocks changes no result (one graph per block structure)."""
    _, eager = _build(method, 'seg')
    _randomise(eager.prompter)
    _, compiled = _build(method, 'seg', compile_blocks=True)
    compiled.load_state_dict(eager.state_dict())
    img = torch.randn(2, 3, 32, 32)
    out_e, loss_e = _train_forward(eager, method, img)
    out_c, loss_c = _train_forward(compiled, method, img)
    for x, y in zip(out_e, out_c):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    for k in loss_e:
        torch.testing.assert_close(loss_e[k], loss_c[k], atol=1e-5,
                                   rtol=1e-5)
    grads = []
    for model, out, losses in ((eager, out_e, loss_e),
                               (compiled, out_c, loss_c)):
        (sum(o.sum() for o in out) + sum(losses.values())).backward()
        grads.append([p.grad for p in model.prompter.parameters()])
    for g_e, g_c in zip(*grads):
        torch.testing.assert_close(g_e, g_c, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('method', list(METHODS))
def test_tap_runs_the_method_as_at_inference_in_training_mode(method):
    """forward_intermediates asks for no targets and computes no losses,
    also on a module in training mode (DA-VPT would need labels)."""
    _, twin = _build(method, 'seg')
    _randomise(twin.prompter)
    img = torch.randn(2, 3, 32, 32)
    want, = twin.forward_intermediates(img, [-1])
    twin.train()
    got, = twin.forward_intermediates(img, [-1])
    torch.testing.assert_close(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('method,host', CASES)
def test_cuda_graph_steps_equal_eager(method, host):
    """Captured training steps (cuda_graph=True) give eager mode's
    features, losses and gradients, step after step, while the parameters
    change in place between them."""
    _, eager = _build(method, host)
    _randomise(eager.prompter)
    _, graphed = _build(method, host, cuda_graph=True)
    graphed.load_state_dict(eager.state_dict())
    models = [eager.cuda().train(), graphed.cuda().train()]
    _, targets = METHODS[method]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for step in range(3):
        img = torch.randn(4, 3, 32, 32, device='cuda')
        tgt = None if targets is None else {
            k: v.cuda() if torch.is_tensor(v) else v
            for k, v in targets(4).items()}
        results = []
        for model in models:
            feats, losses = model.forward_with_losses(img, tgt)
            feats = [f.clone() for f in feats]   # static buffers
            loss = sum(f.pow(2).mean() for f in feats) + \
                sum(losses.values(), img.new_zeros(()))
            loss.backward()
            params = [p for p in model.parameters() if p.requires_grad]
            results.append((feats, {k: v.detach().clone()
                                    for k, v in losses.items()},
                            [p.grad.clone() for p in params]))
            with torch.no_grad():
                for p in params:
                    p.sub_(0.1 * p.grad)
                    p.grad = None
        (f_e, l_e, g_e), (f_g, l_g, g_g) = results
        for a, b in zip(f_e, f_g):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert set(l_e) == set(l_g)
        for k in l_e:
            torch.testing.assert_close(l_e[k], l_g[k], atol=1e-5, rtol=1e-5)
        for a, b in zip(g_e, g_g):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert len(graphed._graphs) == 1   # one signature, captured once
