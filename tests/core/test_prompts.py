"""Prompt dropout (``mmship/core/prompts.py``): ``F.dropout``'s forward and
gradient, with the mask kept as bits for the backward."""
import pytest
import torch

from mmship.core.prompts import PromptDropout


def test_gradient_is_the_dropped_gradient_summed_over_the_batch():
    torch.manual_seed(0)
    drop = PromptDropout(0.3).train()
    tokens = torch.randn(1, 13, 7, dtype=torch.float64, requires_grad=True)
    expanded = tokens.expand(5, 13, 7)   # 455 elements: not whole bytes
    out = drop(expanded)
    keep = out != 0
    torch.testing.assert_close(out[keep], (expanded / 0.7)[keep])
    assert 0.6 < keep.double().mean() < 0.8
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(tokens.grad,
                               (grad * keep / 0.7).sum(0, keepdim=True))


def test_the_backward_keeps_one_bit_per_element():
    drop = PromptDropout(0.1).train()
    x = torch.randn(64, 50, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        drop(x)
    assert sum(t.numel() * t.element_size() for t in saved) == \
        x.numel() // 8 + 8   # the mask, and the eight bit weights


def test_off_in_eval_and_mask_free_without_autograd():
    drop = PromptDropout(0.5)
    x = torch.randn(4, 3, 8)
    assert drop.eval()(x) is x
    with torch.no_grad():
        out = drop.train()(x)
    assert ((out == 0) | torch.isclose(out, 2 * x)).all()
    assert PromptDropout(0.0).train()(x) is x
    assert repr(drop) == 'PromptDropout(p=0.5)' and not drop.state_dict()


def test_refuses_a_rate_that_drops_everything():
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        PromptDropout(1.0)
