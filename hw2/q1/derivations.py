"""Question 1's mathematics as SymPy computations: the symbols, the operation counts of softmax and linear
attention, the Taylor feature maps with their dimensions, and the crossover length L*. The benchmark uses
these numbers; `hw2.q1.answers` checks the identities and typesets them for the report. Conventions of the
statement: Z = Softmax(Q K^T) V with Q, K, V in R^{L x D}, no 1/sqrt(D).

Operation counts count scalar multiplications, additions, divisions and exponentials as one operation each.
"""
from __future__ import annotations

import itertools
from functools import reduce

import sympy as sp

L, D, M, K = sp.symbols("L D M K", positive=True, integer=True)
n_ = sp.Symbol("n", integer=True, nonnegative=True)
t = sp.Symbol("t", real=True)


def vector(name: str, dim: int) -> sp.Matrix:
    """A column vector of real symbols name_1 .. name_dim."""
    return sp.Matrix(sp.symbols(f"{name}_1:{dim + 1}", real=True))


def matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))


def truncated_exp(x, order: int):
    """sum_{n < order} x^n / n!: the first `order` terms of the McLaurin series of exp."""
    return sum(x**n / sp.factorial(n) for n in range(order))


# --- 1.1 ---------------------------------------------------------------------------------------------------

def softmax_attention_cost(length=L, dim=D) -> dict:
    """Operation counts of Softmax(Q K^T) V, step by step (L x L scores, row softmax, L x L times L x D)."""
    scores = length**2 * dim + length**2 * (dim - 1)            # L^2 dot products of length D
    softmax = length**2 + length * (length - 1) + length**2    # exp, row sums, divisions
    product = length * dim * length + length * dim * (length - 1)  # (L x L)(L x D)
    return {"scores": scores, "softmax": softmax, "product": product,
            "total": sp.expand(scores + softmax + product)}


# --- 1.2 ---------------------------------------------------------------------------------------------------

def full_feature_map(x: sp.Matrix, order: int) -> sp.Matrix:
    """phi(x) = [x^{(x)n} / sqrt(n!) for n < order], each tensor power flattened: (q^T k)^n = <q^{(x)n}, k^{(x)n}>."""
    parts = []
    for n in range(order):
        for idx in itertools.product(range(len(x)), repeat=n):
            parts.append(reduce(lambda a, i: a * x[i], idx, sp.Integer(1)) / sp.sqrt(sp.factorial(n)))
    return sp.Matrix(parts)


def multi_indices(dim: int, degree: int) -> list[tuple[int, ...]]:
    """The monomials of one degree, as sorted index tuples (i1 <= i2 <= ...)."""
    return list(itertools.combinations_with_replacement(range(dim), degree))


def monomial_weight(idx: tuple[int, ...]) -> sp.Expr:
    """sqrt(multinomial(n; alpha) / n!) = 1/sqrt(alpha!) for the monomial with exponents alpha."""
    n = len(idx)
    counts = [idx.count(i) for i in set(idx)]
    multinomial = sp.factorial(n) / sp.Mul(*[sp.factorial(c) for c in counts])
    return sp.sqrt(multinomial / sp.factorial(n))


def symmetric_feature_map(x: sp.Matrix, order: int) -> sp.Matrix:
    """One coordinate per monomial x^alpha, |alpha| < order, weighted by sqrt(multinomial / n!)."""
    parts = []
    for n in range(order):
        for idx in multi_indices(len(x), n):
            parts.append(monomial_weight(idx) * reduce(lambda a, i: a * x[i], idx, sp.Integer(1)))
    return sp.Matrix(parts)


def wrong_feature_map(x: sp.Matrix) -> sp.Matrix:
    """The common wrong answer [1, x_i, x_i^2/sqrt(2)]: squares of coordinates only (M = 2D + 1)."""
    return sp.Matrix([1, *x, *[xi**2 / sp.sqrt(2) for xi in x]])


def feature_dim_full(dim=D, order=K):
    """M = sum_{n<K} D^n = (D^K - 1)/(D - 1) for D > 1."""
    return (dim**order - 1) / (dim - 1)


def feature_dim_symmetric(dim=D, order=K):
    """M = sum_{n<K} C(D+n-1, n) = C(D+K-1, K-1) (hockey-stick identity)."""
    return sp.binomial(dim + order - 1, order - 1)


def kernel_residual(phi, dim: int, order: int) -> sp.Expr:
    """phi(q)^T phi(k) - sum_{n<K} (q^T k)^n/n!, expanded (0 when the map is exact)."""
    q, k = vector("q", dim), vector("k", dim)
    return sp.expand((phi(q, order).T * phi(k, order))[0] - truncated_exp((q.T * k)[0], order))


# --- 1.4 ---------------------------------------------------------------------------------------------------

def feature_map_cost(dim=D, order: int = 3):
    """Operations per row of the symmetric map as `taylor.taylor_features` builds it: each monomial of degree
    n >= 2 is one product (a degree n-1 monomial times one coordinate), and those whose first index repeats,
    as many as the monomials of degree n-1, take one more multiplication by their weight. For K = 3 that is
    D(D+1)/2 products and D weights 1/sqrt(2): M - 1."""
    return sum(sp.binomial(dim + n - 1, n) + sp.binomial(dim + n - 2, n - 1) for n in range(2, order))


def linear_attention_cost(length=L, dim=D, feat=M) -> dict:
    """Operation counts of D^-1 Phi(Q) (Phi(K)^T V), right to left, step by step, for K = 3 (phi costs M - 1
    per row, `feature_map_cost`)."""
    features = 2 * length * (feat - 1)                             # phi of the L rows of Q and of K
    kv = feat * dim * length + feat * dim * (length - 1)           # Phi(K)^T V: (M x L)(L x D)
    ksum = feat * (length - 1)                                     # Phi(K)^T 1_L
    numerator = length * dim * feat + length * dim * (feat - 1)    # Phi(Q) (M x D)
    denominator = length * feat + length * (feat - 1)              # Phi(Q) (M)
    divide = length * dim
    total = sp.expand(features + kv + ksum + numerator + denominator + divide)
    return {"features": features, "kv": kv, "ksum": ksum, "numerator": numerator,
            "denominator": denominator, "divide": divide, "total": total}


LINEAR_STEPS = ("features", "kv", "ksum", "numerator", "denominator", "divide")


def crossover_length(dim=D, feat=M):
    """L* where the flop counts of softmax and linear attention are equal (the positive root)."""
    diff = sp.expand(softmax_attention_cost(L, dim)["total"] - linear_attention_cost(L, dim, feat)["total"])
    roots = [r for r in sp.solve(diff, L) if r != 0]
    positive = [r for r in roots if not (r.is_number and r <= 0)]
    return sp.simplify(positive[-1]) if positive else None


def crossover_value(dim: int, feat: int) -> float:
    """L*(D, M) as a number, for comparison with the measured crossover."""
    return float(crossover_length().subs({D: dim, M: feat}))
