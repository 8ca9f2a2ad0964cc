"""The Gram-matrix model and its hand-written gradient against the obvious per-example model."""

import pytest
import torch

from polybook.models import init_weights, loss_and_grad, reconstruction, reconstruction_loss


def per_example_loss(W, l1=0.0, noise=None, interference=True):
    """The model as written in the paper: feed each basis input through h = W^T x (+ noise), y = ReLU(W h)."""
    instances, n, m = W.shape
    total = torch.zeros(instances, dtype=W.dtype)
    for i in range(n):
        x = torch.zeros(n, dtype=W.dtype)
        x[i] = 1.0
        h = torch.einsum("bnm,n->bm", W, x)
        if noise is not None:
            h = h + noise[:, i]
        y = torch.relu(torch.einsum("bnm,bm->bn", W, h))
        err = (x - y) ** 2
        total = total + (err.sum(-1) if interference else err[:, i])
    return total + l1 * W.abs().sum(dim=(-1, -2))


def test_init_weights_have_paper_scale_and_are_seeded():
    W = init_weights(4, 64, 400, seed=3)
    assert W.shape == (4, 64, 400)
    assert abs(W.var().item() - 1 / 400) < 0.05 / 400
    assert torch.equal(W, init_weights(4, 64, 400, seed=3))
    assert not torch.equal(W, init_weights(4, 64, 400, seed=4))


def test_gram_loss_equals_per_example_loss():
    W = init_weights(3, 7, 11, seed=0, dtype=torch.float64) * 3
    assert torch.allclose(reconstruction_loss(W), per_example_loss(W))
    assert torch.allclose(reconstruction_loss(W, interference=False), per_example_loss(W, interference=False))


@pytest.mark.parametrize("interference", [True, False])
@pytest.mark.parametrize("with_noise", [False, True])
def test_analytic_gradient_equals_autograd_of_per_example_model(with_noise, interference):
    torch.manual_seed(0)
    W = (torch.randn(2, 6, 9, dtype=torch.float64) * 0.6).requires_grad_(True)
    noise = torch.randn(2, 6, 9, dtype=torch.float64) * 0.2 if with_noise else None
    loss, grad = loss_and_grad(W.detach(), l1=0.03, noise=noise, interference=interference)
    ref = per_example_loss(W, l1=0.03, noise=noise, interference=interference)
    ref.sum().backward()
    assert torch.allclose(loss + 0.03 * W.detach().abs().sum(dim=(-1, -2)), ref.detach())
    assert torch.allclose(grad, W.grad, atol=1e-12)


def test_reconstruction_of_orthonormal_encoding_is_identity():
    W = torch.zeros(1, 3, 5)
    W[0, 0, 1], W[0, 1, 3], W[0, 2, 4] = 1.0, -1.0, 1.0
    assert torch.equal(reconstruction(W)[0], torch.eye(3))
    assert reconstruction_loss(W).item() == 0.0


def test_opposite_sign_pair_on_one_neuron_costs_nothing():
    # ReLU hides the negative overlap: a +1/-1 pair shares a neuron losslessly; a +1/+1 pair does not.
    opposite = torch.tensor([[[1.0], [-1.0]]])
    same = torch.tensor([[[1.0], [1.0]]])
    assert reconstruction_loss(opposite).item() == 0.0
    assert reconstruction_loss(same).item() == 2.0
