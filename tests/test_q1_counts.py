"""The operation counts of Q1.1 and Q1.4 against the operations the implementation performs.

`Counted` intercepts every aten operator torch runs and adds its scalar arithmetic (a matrix product
(m x k)(k x n) is m n k multiplications and m n (k - 1) additions; an elementwise product or quotient one
operation per output; a sum over n entries n - 1 additions; copies, fills and views none). An operator it
does not know fails the test, so a new operation in the implementation cannot go uncounted.
"""
import pytest
import sympy as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hw2.q1 import answers as qa
from hw2.q1 import derivations as dv
from hw2.q1 import taylor

FREE = {"clone", "copy_", "fill_", "empty", "new_empty", "new_zeros", "zeros", "empty_strided", "view",
        "_unsafe_view", "transpose", "t", "unsqueeze", "squeeze", "expand", "slice", "select", "as_strided",
        "alias", "detach", "lift_fresh", "unflatten", "_to_copy", "split", "permute", "reshape"}
ELEMENTWISE = {"mul", "mul_", "div", "div_", "add", "add_", "sub", "sub_"}


class Counted(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in ("mm", "bmm"):
            a, b = args[0], args[1]
            self.ops += a.shape[:-1].numel() * b.shape[-1] * (2 * a.shape[-1] - 1)
        elif name in ELEMENTWISE:
            self.ops += out.numel()
        elif name == "sum":
            self.ops += args[0].numel() - out.numel()
        elif name == "_softmax":  # the derivation's steps: exp of every score, the row sums, one division each
            rows, width = args[0].shape[:-1].numel(), args[0].shape[-1]
            self.ops += rows * width + rows * (width - 1) + rows * width
        elif name not in FREE:
            raise AssertionError(f"operator {func} is not counted: add its arithmetic to this test")
        return out


def counted(fn, *args, **kwargs) -> int:
    with Counted() as counter:
        fn(*args, **kwargs)
    return counter.ops


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("dim,order", [(2, 3), (3, 3), (5, 3), (3, 4), (4, 5)])
def test_feature_map_costs_what_the_derivation_says(dim, order):
    length = 7
    ops = counted(taylor.taylor_features, rand(1, length, dim), order)
    assert ops == length * dv.feature_map_cost(dim, order)
    if order == 3:
        assert ops == length * (taylor.feature_dim(dim, 3) - 1)


@pytest.mark.parametrize("length,dim", [(5, 2), (9, 3), (4, 6)])
def test_linear_attention_costs_its_itemised_steps(length, dim):
    feat = taylor.feature_dim(dim, 3)
    q, k, v = rand(1, length, dim, seed=1), rand(1, length, dim, seed=2), rand(1, length, dim, seed=3)
    steps = {name: int(expr.subs({dv.L: length, dv.D: dim, dv.M: feat}))
             for name, expr in dv.linear_attention_cost().items()}
    assert sum(steps[name] for name in dv.LINEAR_STEPS) == steps["total"]
    # each step on its own, as linear_attention performs it
    fq, fk = taylor.taylor_features(q, 3), taylor.taylor_features(k, 3)
    kv, ksum = fk.transpose(-1, -2) @ v, fk.sum(-2).unsqueeze(-1)
    numerator, denominator = fq @ kv, fq @ ksum
    assert counted(taylor.taylor_features, q, 3) + counted(taylor.taylor_features, k, 3) == steps["features"]
    assert counted(lambda: fk.transpose(-1, -2) @ v) == steps["kv"]
    assert counted(lambda: fk.sum(-2)) == steps["ksum"]
    assert counted(lambda: fq @ kv) == steps["numerator"]
    assert counted(lambda: fq @ ksum) == steps["denominator"]
    assert counted(lambda: numerator / denominator) == steps["divide"]
    # and the whole call: nothing else is computed
    assert counted(taylor.linear_attention, q, k, v, 3) == steps["total"]


@pytest.mark.parametrize("length,dim", [(5, 2), (8, 3)])
def test_softmax_attention_costs_its_itemised_steps(length, dim):
    q, k, v = rand(1, length, dim, seed=4), rand(1, length, dim, seed=5), rand(1, length, dim, seed=6)
    steps = {name: int(expr.subs({dv.L: length, dv.D: dim})) for name, expr in dv.softmax_attention_cost().items()}
    assert steps["scores"] + steps["softmax"] + steps["product"] == steps["total"]
    assert counted(lambda: q @ k.transpose(-1, -2)) == steps["scores"]
    weights = torch.softmax(q @ k.transpose(-1, -2), -1)
    assert counted(lambda: weights @ v) == steps["product"]
    assert counted(taylor.softmax_attention, q, k, v) == steps["total"]


def test_a_scale_other_than_one_is_counted():
    q, k, v = rand(1, 5, 2, seed=7), rand(1, 5, 2, seed=8), rand(1, 5, 2, seed=9)
    total = int(dv.linear_attention_cost()["total"].subs({dv.L: 5, dv.D: 2, dv.M: 6}))
    assert counted(taylor.linear_attention, q, k, v, 3, scale=0.5) == total + 5 * 2


def test_the_report_itemises_every_step_and_the_total():
    answer = qa.q1_4()
    for step in dv.LINEAR_STEPS:
        assert sp.latex(sp.factor(answer.exprs[step])) in answer.latex[step], step
    assert "4 D L M - D M + 5 L M - 3 L - M" in answer.latex["total"]
