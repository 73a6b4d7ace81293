"""Question 1's answers as the report states them: each `qN_M` function returns a `Derivation`, the SymPy
objects computed by `hw2.q1.derivations` (`exprs`), their LaTeX for the report (`latex`) and the identities
SymPy checked (`checks`, each True only if SymPy proved it). `answers()` runs them all. Only the report and
the tests use this module, so rewording its LaTeX leaves every run current.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from hw2.q1.derivations import (
    LINEAR_STEPS,
    D,
    K,
    L,
    M,
    crossover_length,
    feature_dim_full,
    feature_dim_symmetric,
    feature_map_cost,
    full_feature_map,
    kernel_residual,
    linear_attention_cost,
    matrix,
    n_,
    softmax_attention_cost,
    symmetric_feature_map,
    t,
    truncated_exp,
    vector,
    wrong_feature_map,
)

TABLE_DIMS = (2, 4, 16, 64, 200)


@dataclass
class Derivation:
    """One question's results: SymPy objects, their LaTeX, and the identities SymPy verified."""

    title: str
    exprs: dict = field(default_factory=dict)
    latex: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)

    def verified(self) -> bool:
        return all(self.checks.values())

    def __str__(self) -> str:
        lines = [self.title] + [f"  [{'ok' if ok else 'FAILED'}] {name}" for name, ok in self.checks.items()]
        return "\n".join(lines + [f"  {name}: {text}" for name, text in self.latex.items()])


def by_degree_latex(expr: sp.Expr, q: sp.Matrix, k: sp.Matrix) -> str:
    """LaTeX of a polynomial in q and k, its terms by increasing degree and each written coefficient, q part,
    k part (1 + q_1 k_1 + ...): SymPy's printer orders terms by its own key and puts k before q."""
    gens = [*q, *k]
    terms = sorted(sp.Poly(expr, *gens).terms(), key=lambda term: (sum(term[0]), [-e for e in term[0]]))
    parts = []
    for exponents, coeff in terms:
        factors = " ".join(sp.latex(g) + (f"^{{{e}}}" if e > 1 else "") for g, e in zip(gens, exponents) if e)
        size = abs(coeff)
        if size == 1 and factors:
            number = ""
        elif isinstance(size, sp.Rational) and not size.is_integer:
            number = rf"\tfrac{{{size.p}}}{{{size.q}}}\,"
        else:
            number = sp.latex(size) + (r"\," if factors else "")
        parts.append(("-" if coeff < 0 else "+", number + factors))
    return ("-" if parts[0][0] == "-" else "") + parts[0][1] + "".join(f" {sign} {text}" for sign, text in parts[1:])


# --- 1.1 ---------------------------------------------------------------------------------------------------

def q1_1() -> Derivation:
    counts = softmax_attention_cost()
    total = counts["total"]
    leading = sp.Poly(total, L).LC()  # the coefficient of L^2
    d = Derivation("1.1 Cost of softmax attention")
    d.exprs = {**counts, "leading_coefficient": leading,
               "order": sp.O(L**2, (L, sp.oo)), "memory": L**2}
    d.latex = {
        "scores": rf"QK^\top:\ {sp.latex(sp.factor(counts['scores']))}",
        "softmax": rf"\operatorname{{Softmax}}:\ {sp.latex(sp.expand(counts['softmax']))}",
        "product": rf"(\cdot)V:\ {sp.latex(sp.factor(counts['product']))}",
        "total": rf"C_\text{{softmax}}(L, D) = {sp.latex(total)} = O(L^2 D)",
        "memory": r"\text{the } L \times L \text{ score matrix: } O(L^2) \text{ memory}",
    }
    d.checks = {
        "quadratic in L": sp.degree(total, L) == 2,
        "leading term (4D + 2) L^2": sp.expand(leading - (4 * D + 2)) == 0,
        "linear in D": sp.degree(total, D) == 1,
    }
    return d


# --- 1.2 ---------------------------------------------------------------------------------------------------

def q1_2(cases=((2, 3), (3, 3), (2, 4), (3, 4))) -> Derivation:
    d = Derivation("1.2 Taylor feature map")
    q2, k2 = vector("q", 2), vector("k", 2)
    qk = (q2.T * k2)[0]

    for dim, order in cases:
        d.checks[f"full map exact, D={dim} K={order}"] = kernel_residual(full_feature_map, dim, order) == 0
        d.checks[f"symmetric map exact, D={dim} K={order}"] = kernel_residual(symmetric_feature_map, dim, order) == 0
        d.checks[f"full map length, D={dim} K={order}"] = (
            len(full_feature_map(vector("q", dim), order)) == feature_dim_full(dim, order))
        d.checks[f"symmetric map length, D={dim} K={order}"] = (
            len(symmetric_feature_map(vector("q", dim), order)) == feature_dim_symmetric(dim, order))

    # closed forms from the sums, symbolically in D and K
    full_sum = sp.summation(D**n_, (n_, 0, K - 1))
    sym_sum = sp.summation(sp.binomial(D + n_ - 1, n_), (n_, 0, K - 1))
    # SymPy sums to Piecewise((K, D = 1), ((1 - D^K)/(1 - D), otherwise)): compare the D > 1 branch
    full_general = full_sum.args[-1][0] if isinstance(full_sum, sp.Piecewise) else full_sum
    d.checks["sum_n D^n = (D^K - 1)/(D - 1)"] = sp.simplify(full_general - feature_dim_full()) == 0
    d.checks["sum_n C(D+n-1, n) = C(D+K-1, K-1)"] = sp.combsimp(sym_sum / feature_dim_symmetric()) == 1
    m3 = sp.expand(sp.expand_func(feature_dim_symmetric(D, 3)))
    d.checks["M(D, 3) = 1 + D + D(D+1)/2"] = sp.expand(m3 - (1 + D + D * (D + 1) / 2)) == 0

    # the second-order kernel 1 + t + t^2/2 = ((t + 1)^2 + 1)/2 >= 1/2: normalisers never vanish
    kernel2 = truncated_exp(t, 3)
    square = ((t + 1)**2 + 1) / 2
    d.checks["1 + t + t^2/2 = ((t+1)^2 + 1)/2"] = sp.expand(kernel2 - square) == 0
    d.checks["min of 1 + t + t^2/2 is 1/2 at t = -1"] = (
        sp.solve(sp.diff(kernel2, t), t) == [-1] and kernel2.subs(t, -1) == sp.Rational(1, 2))
    d.checks["1 + t + t^2/2 has no real root"] = sp.real_roots(sp.Poly(kernel2, t)) == []
    # an even number of terms (odd degree) has a real root: with K = 2 or 4 a normaliser can be 0 or < 0
    even_roots = {kk: [float(r) for r in sp.real_roots(sp.Poly(truncated_exp(t, kk), t))] for kk in (2, 4)}
    d.checks["K = 2 and K = 4 kernels have a real root"] = all(even_roots.values())

    # the wrong map misses the cross terms q_i q_j k_i k_j (i < j)
    wrong = sp.expand((wrong_feature_map(q2).T * wrong_feature_map(k2))[0] - truncated_exp(qk, 3))
    cross = -q2[0] * q2[1] * k2[0] * k2[1]
    d.checks["wrong map residual = -q1 q2 k1 k2"] = sp.expand(wrong - cross) == 0

    table = [{"D": dd, "M_symmetric": int(feature_dim_symmetric(dd, 3)), "M_full": int(feature_dim_full(dd, 3)),
              "M_wrong": 2 * dd + 1} for dd in TABLE_DIMS]
    table_k = [{"D": dd, "K": kk, "M_symmetric": int(feature_dim_symmetric(dd, kk)),
                "M_full": int(feature_dim_full(dd, kk))} for dd in TABLE_DIMS for kk in (3, 4, 5)]
    phi_sym = symmetric_feature_map(q2, 3)
    d.exprs = {
        "phi_symmetric_D2": phi_sym, "phi_full_D2": full_feature_map(q2, 3),
        "kernel_D2": sp.expand((phi_sym.T * symmetric_feature_map(k2, 3))[0]),
        "M_full": feature_dim_full(), "M_symmetric": feature_dim_symmetric(), "M_K3": m3,
        "wrong_residual_D2": wrong, "kernel_K3": kernel2, "kernel_K3_square": square,
        "even_K_real_roots": even_roots, "table": table, "table_K": table_k,
    }
    d.latex = {
        "series": r"\exp(\mathbf q^\top\mathbf k) \approx \sum_{n=0}^{K-1}\frac{(\mathbf q^\top\mathbf k)^n}{n!}"
                  r" = \sum_{n=0}^{K-1}\sum_{|\alpha| = n}\frac{\mathbf q^\alpha\,\mathbf k^\alpha}{\alpha!}",
        "phi_D2": r"\phi(\mathbf q) = " + sp.latex(phi_sym.T),
        "kernel_D2": r"\phi(\mathbf q)^\top\phi(\mathbf k) = " + by_degree_latex(d.exprs["kernel_D2"], q2, k2)
                     + r" = 1 + \mathbf q^\top\mathbf k + \tfrac12(\mathbf q^\top\mathbf k)^2",
        "phi_K3": r"\phi(\mathbf x) = \Bigl[\,1,\ x_1, \dots, x_D,\ \tfrac{1}{\sqrt2}x_1^2, \dots, "
                  r"\tfrac{1}{\sqrt2}x_D^2,\ x_i x_j\ (i<j)\Bigr]",
        "M_K3": r"M = " + sp.latex(m3) + r" = 1 + D + \frac{D(D+1)}{2}",
        "M_symmetric": r"M_\text{sym}(D, K) = \sum_{n=0}^{K-1}\binom{D+n-1}{n} = " + sp.latex(feature_dim_symmetric()),
        "M_full": r"M_\text{full}(D, K) = \sum_{n=0}^{K-1} D^n = " + sp.latex(feature_dim_full()),
        "wrong_residual": r"[1, x_i, x_i^2/\sqrt2]:\ \phi(\mathbf q)^\top\phi(\mathbf k) - "
                          r"\bigl(1 + \mathbf q^\top\mathbf k + \tfrac12(\mathbf q^\top\mathbf k)^2\bigr) = "
                          + by_degree_latex(wrong, q2, k2),
        "positivity": r"1 + t + \frac{t^2}{2} = \frac{(t+1)^2 + 1}{2} \ge \frac12",
    }
    return d


# --- 1.3 ---------------------------------------------------------------------------------------------------

def q1_3(length: int = 2, dim: int = 2, order: int = 3) -> Derivation:
    """Kernel attention row by row equals D^-1 Phi(Q) Phi(K)^T V, exactly, for symbolic Q, K, V."""
    Q, Kmat, V = matrix("q", length, dim), matrix("k", length, dim), matrix("v", length, dim)
    kernel = sp.Matrix(length, length, lambda i, j: truncated_exp((Q[i, :] * Kmat[j, :].T)[0], order))
    # softmax with the truncated exponential in place of exp: row i is kernel[i, :] / sum_j kernel[i, j]
    attention = sp.Matrix(length, dim, lambda i, c: sum(kernel[i, j] * V[j, c] for j in range(length))
                          / sum(kernel[i, j] for j in range(length)))
    phi_q = sp.Matrix.vstack(*[symmetric_feature_map(Q[i, :].T, order).T for i in range(length)])
    phi_k = sp.Matrix.vstack(*[symmetric_feature_map(Kmat[i, :].T, order).T for i in range(length)])
    scores = phi_q * phi_k.T
    row_sums = scores * sp.ones(length, 1)
    normaliser = sp.diag(*row_sums)
    normaliser_inv = sp.diag(*[1 / s for s in row_sums])  # Diag(v)^-1 = Diag(1/v)
    linear = normaliser_inv * scores * V
    d = Derivation("1.3 Linearised attention")
    d.checks = {
        f"Phi(Q) Phi(K)^T = kernel matrix (L={length}, D={dim})": (scores - kernel).expand() == sp.zeros(length),
        f"D^-1 Phi(Q) Phi(K)^T V = kernel attention (L={length}, D={dim})":
            all(_same_fraction(a, b) for a, b in zip(linear, attention)),
        "rows of D^-1 Phi(Q) Phi(K)^T sum to 1":
            (normaliser_inv * scores * sp.ones(length, 1)).applyfunc(sp.cancel) == sp.ones(length, 1),
    }
    d.exprs = {"Q": Q, "K": Kmat, "V": V, "kernel": kernel, "normaliser": normaliser, "Z": attention}
    d.latex = {
        "softmax_rows": r"\mathbf z_i = \sum_{j=1}^{L}\frac{\exp(\mathbf q_i^\top\mathbf k_j)}"
                        r"{\sum_{l=1}^{L}\exp(\mathbf q_i^\top\mathbf k_l)}\,\mathbf v_j"
                        r"\quad\Longleftrightarrow\quad \mathbf Z = \operatorname{Diag}(\exp(\mathbf Q\mathbf K^\top)"
                        r"\mathbf 1_L)^{-1}\exp(\mathbf Q\mathbf K^\top)\mathbf V",
        "substitute": r"\exp(\mathbf Q\mathbf K^\top) \approx \Phi(\mathbf Q)\Phi(\mathbf K)^\top"
                      r"\ \Rightarrow\ \mathbf Z \approx \mathbf D^{-1}\Phi(\mathbf Q)\Phi(\mathbf K)^\top\mathbf V,"
                      r"\quad \mathbf D = \operatorname{Diag}(\Phi(\mathbf Q)\Phi(\mathbf K)^\top\mathbf 1_L)",
        "normaliser_example": r"\mathbf D_{11} = " + sp.latex(sp.factor(normaliser[0, 0])),
    }
    return d


def _same_fraction(a: sp.Expr, b: sp.Expr) -> bool:
    """a == b for rational functions, by cross-multiplying numerators and denominators (polynomial expansion
    only: much faster than cancelling the difference)."""
    (na, da), (nb, db) = sp.fraction(sp.together(a)), sp.fraction(sp.together(b))
    return sp.expand(na * db - nb * da) == 0


# --- 1.4 ---------------------------------------------------------------------------------------------------

def q1_4() -> Derivation:
    cost = linear_attention_cost()
    total = cost["total"]
    lstar = crossover_length()
    d = Derivation("1.4 Linear-time attention")
    leading = sp.Poly(total, L).LC()  # the coefficient of L
    d.exprs = {**cost, "leading_coefficient": leading,
               # each step's share of the L M term of the total, for the prose
               "LM_terms": {step: int(sp.Poly(cost[step], L, M, D).coeff_monomial(L * M)) for step in LINEAR_STEPS},
               "order": sp.O(L, (L, sp.oo)), "memory": M * D + L * M, "L_star": lstar,
               "L_star_K3": sp.simplify(lstar.subs(M, sp.expand(sp.expand_func(feature_dim_symmetric(D, 3))))),
               "L_star_table": [{"D": dd, "M": int(feature_dim_symmetric(dd, 3)),
                                 "L_star": float(lstar.subs({D: dd, M: feature_dim_symmetric(dd, 3)}))}
                                for dd in TABLE_DIMS]}
    d.latex = {
        "order": r"\mathbf Z \approx \mathbf D^{-1}\,\Phi(\mathbf Q)\,\underbrace{\bigl(\Phi(\mathbf K)^\top\mathbf V\bigr)}"
                 r"_{M\times D},\quad \mathbf D = \operatorname{Diag}\bigl(\Phi(\mathbf Q)\,"
                 r"\underbrace{(\Phi(\mathbf K)^\top\mathbf 1_L)}_{M}\bigr)",
        "features": r"\Phi(\mathbf Q), \Phi(\mathbf K):\ " + sp.latex(sp.factor(cost["features"])),
        "kv": r"\Phi(\mathbf K)^\top\mathbf V:\ " + sp.latex(sp.factor(cost["kv"])),
        "ksum": r"\Phi(\mathbf K)^\top\mathbf 1_L:\ " + sp.latex(sp.factor(cost["ksum"])),
        "numerator": r"\Phi(\mathbf Q)\bigl(\Phi(\mathbf K)^\top\mathbf V\bigr):\ "
                     + sp.latex(sp.factor(cost["numerator"])),
        "denominator": r"\Phi(\mathbf Q)\bigl(\Phi(\mathbf K)^\top\mathbf 1_L\bigr):\ "
                       + sp.latex(sp.factor(cost["denominator"])),
        "divide": r"\text{division by the row sums}:\ " + sp.latex(cost["divide"]),
        "feature_cost": r"\phi:\ " + sp.latex(sp.factor(sp.expand_func(feature_map_cost(D, 3)))) + r" = M - 1"
                        r"\ \text{operations per row}",
        "total": r"C_\text{linear}(L, D, M) = " + sp.latex(total) + r" = O(L M D)",
        "K3": r"M = O(D^2) \text{ for } K = 3:\ O(L D^3);\ \text{in general } O\!\left(L D \binom{D+K-1}{K-1}\right)",
        "memory": r"O(MD + LM) \text{ memory: no } L\times L \text{ matrix}",
        "L_star": r"L^\ast(D, M) = " + sp.latex(lstar) + r" \approx M",
    }
    d.checks = {
        "linear in L": sp.degree(total, L) == 1,
        "phi costs M - 1 per row for K = 3": sp.expand(
            sp.expand_func(feature_map_cost(D, 3) - (feature_dim_symmetric(D, 3) - 1))) == 0,
        "leading term (4MD + 5M - 3) L": sp.expand(leading - (4 * M * D + 5 * M - 3)) == 0,
        "L* is a crossover": sp.simplify((softmax_attention_cost()["total"] - total).subs(L, lstar)) == 0,
        "softmax cheaper below L*, linear above (D=16, M=153)": _sign_change(16, 153, lstar),
    }
    return d


def _sign_change(dim: int, feat: int, lstar) -> bool:
    ls = float(lstar.subs({D: dim, M: feat}))
    diff = softmax_attention_cost(L, dim)["total"] - linear_attention_cost(L, dim, feat)["total"]
    return bool(diff.subs(L, math.floor(ls) - 1) < 0 < diff.subs(L, math.ceil(ls) + 1))


def answers() -> dict[str, Derivation]:
    """All of Question 1, keyed "1.1" .. "1.4"."""
    return {"1.1": q1_1(), "1.2": q1_2(), "1.3": q1_3(), "1.4": q1_4()}
