"""Question 1's derivations and answers: every identity is proved by SymPy, and the closed forms match built vectors."""
import pytest
import sympy as sp

from hw2.q1 import answers as qa
from hw2.q1 import derivations as dv
from hw2.q1 import taylor


@pytest.fixture(scope="module")
def answers():
    return qa.answers()


def test_every_identity_of_question_1_is_verified(answers):
    failed = {key: [name for name, ok in d.checks.items() if not ok] for key, d in answers.items()}
    assert all(not names for names in failed.values()), failed
    assert sum(len(d.checks) for d in answers.values()) >= 30


@pytest.mark.parametrize("dim,order", [(2, 3), (3, 3), (2, 4), (3, 4)])
@pytest.mark.parametrize("feature_map", [dv.full_feature_map, dv.symmetric_feature_map])
def test_feature_map_gives_the_truncated_series_exactly(feature_map, dim, order):
    assert dv.kernel_residual(feature_map, dim, order) == 0


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_closed_forms_equal_lengths_of_built_feature_vectors(dim, order):
    x = dv.vector("x", dim)
    m_sym, m_full = len(dv.symmetric_feature_map(x, order)), len(dv.full_feature_map(x, order))
    assert m_sym == taylor.feature_dim(dim, order, symmetric=True)
    assert m_full == taylor.feature_dim(dim, order, symmetric=False)
    assert m_sym == dv.feature_dim_symmetric(dim, order)
    if dim > 1:
        assert m_full == dv.feature_dim_full(dim, order)


def test_dimension_table_for_k3(answers):
    table = {row["D"]: row for row in answers["1.2"].exprs["table"]}
    assert [table[d]["M_symmetric"] for d in qa.TABLE_DIMS] == [6, 15, 153, 2145, 20301]
    assert [table[d]["M_full"] for d in qa.TABLE_DIMS] == [1 + d + d * d for d in qa.TABLE_DIMS]
    assert all(table[d]["M_wrong"] == 2 * d + 1 for d in qa.TABLE_DIMS)


def test_wrong_map_misses_the_cross_terms():
    q, k = dv.vector("q", 3), dv.vector("k", 3)
    residual = sp.expand((dv.wrong_feature_map(q).T * dv.wrong_feature_map(k))[0]
                         - dv.truncated_exp((q.T * k)[0], 3))
    cross = -(q[0] * q[1] * k[0] * k[1] + q[0] * q[2] * k[0] * k[2] + q[1] * q[2] * k[1] * k[2])
    assert residual != 0 and sp.expand(residual - cross) == 0


def test_linearised_attention_equals_kernel_attention_for_three_tokens():
    d = qa.q1_3(length=3, dim=2)
    assert d.verified(), d.checks


def test_costs_and_crossover(answers):
    soft, lin = answers["1.1"].exprs["total"], answers["1.4"].exprs["total"]
    assert sp.degree(soft, dv.L) == 2 and sp.degree(lin, dv.L) == 1
    assert sp.expand(soft - (4 * dv.D * dv.L**2 + 2 * dv.L**2 - dv.L - dv.D * dv.L)) == 0
    # L* ~ M: within 10 % of M for the benchmark's dimensions
    for dim, feat in [(16, 153), (64, 2145)]:
        l_star = dv.crossover_value(dim, feat)
        assert abs(l_star / feat - 1) < 0.1
        assert soft.subs({dv.L: int(l_star) - 1, dv.D: dim}) < lin.subs({dv.L: int(l_star) - 1, dv.D: dim, dv.M: feat})
        assert soft.subs({dv.L: int(l_star) + 2, dv.D: dim}) > lin.subs({dv.L: int(l_star) + 2, dv.D: dim, dv.M: feat})


def test_latex_is_ready_for_the_report(answers):
    for key, d in answers.items():
        assert d.latex and all(isinstance(s, str) and s for s in d.latex.values()), key
    assert r"\binom" in answers["1.2"].latex["M_symmetric"]
    assert "O(L^2 D)" in answers["1.1"].latex["total"] and "O(L M D)" in answers["1.4"].latex["total"]
    assert answers["1.2"].latex["wrong_residual"].endswith("= -q_{1} q_{2} k_{1} k_{2}")


def test_second_order_kernel_is_positive_and_even_truncations_are_not(answers):
    exprs = answers["1.2"].exprs
    assert sp.minimum(exprs["kernel_K3"], dv.t, sp.S.Reals) == sp.Rational(1, 2)
    assert exprs["even_K_real_roots"][2] == [-1.0]
    assert len(exprs["even_K_real_roots"][4]) == 1 and exprs["even_K_real_roots"][4][0] < -1


def test_d2_kernel_is_printed_by_increasing_degree(answers):
    latex = answers["1.2"].latex["kernel_D2"]
    assert (r"= 1 + q_{1} k_{1} + q_{2} k_{2} + \tfrac{1}{2}\,q_{1}^{2} k_{1}^{2} + q_{1} q_{2} k_{1} k_{2} "
            r"+ \tfrac{1}{2}\,q_{2}^{2} k_{2}^{2} =") in latex


def test_by_degree_latex_keeps_every_term_and_its_sign():
    q, k = dv.vector("q", 2), dv.vector("k", 2)
    expr = 3 - 2 * q[0] * k[1] + sp.Rational(1, 3) * q[1]**2 * k[0] - q[0]
    text = qa.by_degree_latex(expr, q, k)
    assert text == r"3 - q_{1} - 2\,q_{1} k_{2} + \tfrac{1}{3}\,q_{2}^{2} k_{1}"
    assert qa.by_degree_latex(-q[0] + 1, q, k) == "1 - q_{1}"
