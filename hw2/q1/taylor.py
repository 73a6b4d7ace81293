"""Taylor (McLaurin) linear attention on tensors, softmax references, and approximation-error helpers.

exp(q^T k) ~ sum_{n<K} (q^T k)^n / n! = phi(q)^T phi(k). Two feature maps give the same kernel:
  full      : the tensor powers q^{(x)n} / sqrt(n!), M = sum_{n<K} D^n;
  symmetric : one coordinate per monomial q^alpha (|alpha| < K) weighted by 1/sqrt(alpha!), M = C(D+K-1, K-1)
              (1 + D + D(D+1)/2 for K = 3: 153 at D = 16, 2,145 at D = 64).
Attention follows the statement: Z = Softmax(scale * Q K^T) V with scale = 1 unless given. Tensors have shape
(..., L, D); values may have their own last dimension.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from hw2.q1.constants import INPUT_KINDS  # noqa: E402


def feature_dim(dim: int, order: int = 3, symmetric: bool = True) -> int:
    """M: the length of phi(x) for x in R^dim and `order` = K terms of the series."""
    if dim < 1 or order < 1:
        raise ValueError(f"feature_dim needs dim >= 1 and order >= 1, got dim={dim}, order={order}")
    if symmetric:
        return math.comb(dim + order - 1, order - 1)
    return sum(dim**n for n in range(order))


@lru_cache(maxsize=None)
def _monomial_blocks(dim: int, degree: int) -> tuple[tuple[int, int, tuple[float, ...]], ...]:
    """How to build the degree-`degree` monomials (sorted index tuples, lexicographic order) from those of
    one degree lower: the monomials starting with index i form one block, equal to x_i times the suffix of the
    lower list whose first index is >= i. Weighted by 1/sqrt(alpha!), x^alpha = x_i * (weighted rest)
    / sqrt(count of i in alpha); that count exceeds 1 only on a prefix of the block, whose ratios are returned.
    Returns one (i, suffix start, prefix ratios) per block."""
    lower = list(itertools.combinations_with_replacement(range(dim), degree - 1))
    blocks = []
    for i in range(dim):
        start = next(j for j, idx in enumerate(lower) if idx[0] >= i)
        ratios = tuple(1.0 / math.sqrt(1 + idx.count(i)) for idx in lower[start:] if idx[0] == i)
        blocks.append((i, start, ratios))
    return tuple(blocks)


def taylor_features(x: torch.Tensor, order: int = 3, symmetric: bool = True) -> torch.Tensor:
    """phi(x) of shape (..., M) with phi(q)^T phi(k) = sum_{n<order} (q^T k)^n / n!.

    Each degree is built from the previous one (one product per coordinate, one weight where an index
    repeats), so the map costs at most 2M operations per row and allocates little beyond its output. The
    features are computed feature-major (M x L, each feature one contiguous row, which keeps the products
    streaming through memory) and returned as the transposed (..., L, M) view.
    """
    dim = x.shape[-1]
    xt = x.transpose(-1, -2).contiguous()                       # (..., D, L)
    out = x.new_empty(*x.shape[:-2], feature_dim(dim, order, symmetric), x.shape[-2])
    out[..., 0, :] = 1.0
    if order > 1:
        out[..., 1:dim + 1, :] = xt
    prev, offset = xt, dim + 1
    for degree in range(2, order):
        if symmetric:
            size = feature_dim(dim, degree + 1) - feature_dim(dim, degree)
            block, col = out[..., offset:offset + size, :], 0
            for i, start, ratios in _monomial_blocks(dim, degree):
                part = block[..., col:col + prev.shape[-2] - start, :]
                torch.mul(prev[..., start:, :], xt[..., i:i + 1, :], out=part)
                if len(set(ratios)) == 1:  # degree 2: only x_i^2, weight 1/sqrt(2)
                    part[..., :len(ratios), :].mul_(ratios[0])
                else:
                    part[..., :len(ratios), :].mul_(
                        torch.tensor(ratios, dtype=x.dtype, device=x.device).unsqueeze(-1))
                col += part.shape[-2]
        else:  # tensor power: outer product with x, weight 1/sqrt(n!) = previous weight / sqrt(n)
            size = prev.shape[-2] * dim
            block = out[..., offset:offset + size, :]
            torch.mul(prev.unsqueeze(-2), xt.unsqueeze(-3), out=block.unflatten(-2, (prev.shape[-2], dim)))
            block.mul_(1.0 / math.sqrt(degree))
        prev, offset = block, offset + size
    return out.transpose(-1, -2)


def taylor_exp(x: torch.Tensor, order: int = 3) -> torch.Tensor:
    """sum_{n<order} x^n / n!, elementwise: the kernel phi(q)^T phi(k) as a function of s = q^T k."""
    out, term = torch.ones_like(x), torch.ones_like(x)
    for n in range(1, order):
        term = term * x / n
        out = out + term
    return out


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: int = 3, symmetric: bool = True,
                     scale: float = 1.0, causal: bool = False, chunk_size: int = 128) -> torch.Tensor:
    """Z = D^-1 Phi(Q) (Phi(K)^T V), D = Diag(Phi(Q) (Phi(K)^T 1_L)), computed right to left: O(L M D).

    causal=True uses running sums over chunks (`chunked_causal_linear_attention`).
    """
    fq = taylor_features(q if scale == 1.0 else q * scale, order, symmetric)  # the statement has no scale
    fk = taylor_features(k, order, symmetric)
    if causal:
        return chunked_causal_linear_attention(fq, fk, v, chunk_size)
    kv = fk.transpose(-1, -2) @ v                 # (..., M, Dv)
    ksum = fk.sum(-2).unsqueeze(-1)               # (..., M, 1)
    return (fq @ kv) / (fq @ ksum)


def chunked_causal_linear_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor,
                                    chunk_size: int = 128) -> torch.Tensor:
    """z_i = sum_{j<=i} (phi_i^T phi_j) v_j / sum_{j<=i} phi_i^T phi_j from feature rows.

    Within a chunk the masked (c x c) product is computed directly; earlier chunks enter through the running
    sums S = sum_j phi(k_j) v_j^T (M x Dv) and z = sum_j phi(k_j), so memory is O(M Dv + c M) and time O(L M Dv).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    length = fq.shape[-2]
    out = v.new_empty(*fq.shape[:-1], v.shape[-1])
    state = v.new_zeros(*fk.shape[:-2], fk.shape[-1], v.shape[-1])
    ksum = fk.new_zeros(*fk.shape[:-2], fk.shape[-1], 1)
    mask = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=fq.device).tril()
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        fq_c, fk_c, v_c = fq[..., start:stop, :], fk[..., start:stop, :], v[..., start:stop, :]
        scores = (fq_c @ fk_c.transpose(-1, -2)).masked_fill(~mask[:stop - start, :stop - start], 0.0)
        numerator = scores @ v_c + fq_c @ state
        denominator = scores.sum(-1, keepdim=True) + fq_c @ ksum
        out[..., start:stop, :] = numerator / denominator
        state = state + fk_c.transpose(-1, -2) @ v_c
        ksum = ksum + fk_c.sum(-2).unsqueeze(-1)
    return out


def kernel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: int = 3, scale: float = 1.0,
                     causal: bool = False) -> torch.Tensor:
    """The quadratic form with the truncated exponential in place of exp: rows of taylor_exp(s QK^T) normalised."""
    weights = taylor_exp(scale * (q @ k.transpose(-1, -2)), order)
    if causal:
        weights = weights.tril()
    return (weights @ v) / weights.sum(-1, keepdim=True)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0,
                      causal: bool = False) -> torch.Tensor:
    """Softmax(scale Q K^T) V, naively: the L x L score matrix is materialised."""
    scores = q @ k.transpose(-1, -2)
    if scale != 1.0:  # the statement has no scale: no L^2 extra multiplications for it
        scores = scale * scores
    if causal:
        length = scores.shape[-1]
        future = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0,
                   causal: bool = False) -> torch.Tensor:
    """Softmax(scale Q K^T) V through torch's fused `scaled_dot_product_attention`."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


# --- approximation quality ---------------------------------------------------------------------------------

def make_inputs(kind: str, length: int, dim: int, score_std: float, generator: torch.Generator,
                dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V of one kind, with Q and K rescaled so that the entries of Q K^T have standard deviation
    `score_std` (the scale of q^T k that the error study varies).

    random    : iid Gaussian rows.
    clustered : tokens around 4 cluster centres, Q = K (self-attention on similar tokens: large positive scores).
    opposite  : as clustered, but half of the keys are negated queries: strongly negative scores, where exp
                gives ~0 weight and 1 + t + t^2/2 grows like t^2/2.
    """
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}: use one of {', '.join(INPUT_KINDS)}")
    v = torch.randn(length, dim, generator=generator, dtype=dtype)
    if kind == "random":
        q = torch.randn(length, dim, generator=generator, dtype=dtype)
        k = torch.randn(length, dim, generator=generator, dtype=dtype)
    else:
        centres = torch.randn(4, dim, generator=generator, dtype=dtype)
        assign = torch.randint(0, 4, (length,), generator=generator)
        q = centres[assign] + 0.3 * torch.randn(length, dim, generator=generator, dtype=dtype)
        k = q.clone()
        if kind == "opposite":
            k[length // 2:] = -k[length // 2:]
    factor = math.sqrt(score_std / float((q @ k.T).std()))
    return q * factor, k * factor, v


def attention_error(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: int = 3,
                    scale: float = 1.0) -> dict:
    """How far Taylor linear attention is from softmax attention on one input.

    rel_error      : ||Z_taylor - Z_softmax||_F / ||Z_softmax||_F
    max_abs_error  : max |Z_taylor - Z_softmax|
    weight_tv      : mean over queries of the total-variation distance between the softmax weights and the
                     normalised Taylor weights (0 = same distribution, 1 = disjoint)
    min_kernel     : smallest phi(q_i)^T phi(k_j) (>= 1/2 for order 3: the normaliser never vanishes)
    min_normaliser : smallest row sum of the kernel matrix (the diagonal of D)
    """
    z_taylor = linear_attention(q, k, v, order=order, scale=scale)
    z_softmax = softmax_attention(q, k, v, scale=scale)
    scores = scale * (q @ k.T)
    kernel = taylor_exp(scores, order)
    weights = kernel / kernel.sum(-1, keepdim=True)
    return {
        "score_std": float(scores.std()),
        "rel_error": float((z_taylor - z_softmax).norm() / z_softmax.norm()),
        "max_abs_error": float((z_taylor - z_softmax).abs().max()),
        "weight_tv": float(0.5 * (weights - torch.softmax(scores, -1)).abs().sum(-1).mean()),
        "min_kernel": float(kernel.min()),
        "min_normaliser": float(kernel.sum(-1).min()),
    }
