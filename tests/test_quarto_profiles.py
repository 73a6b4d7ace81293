"""Quarto's project profiles choose hw2's profile: `quarto render --profile smoke` (QUARTO_PROFILE) selects it as
PROFILE=smoke does, hw2's renderer merges `_quarto-<profile>.yml` as Quarto does, and two variables naming
different profiles are an error rather than a guess."""
import subprocess
import sys

import pytest
from conftest import subprocess_env

from hw2.engine.errors import ConfigError
from hw2.engine.profiles import resolve_profile
from hw2.engine.render import load_project


@pytest.mark.parametrize("plain, quarto, expected", [
    ("smoke", None, "smoke"),
    (None, "smoke", "smoke"),
    ("quick", "quick", "quick"),
    (None, "draft,smoke", "smoke"),  # a Quarto-only profile beside hw2's is Quarto's business
    (None, "draft", "quick"),  # no hw2 profile named: the default (quick without a GPU)
])
def test_profile_from_profile_or_quarto_profile(monkeypatch, plain, quarto, expected):
    import hw2.engine.profiles as profiles

    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    for name, value in (("PROFILE", plain), ("QUARTO_PROFILE", quarto)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert resolve_profile() == expected
    assert resolve_profile("full") == "full"  # a command's own --profile comes first


@pytest.mark.parametrize("plain, quarto, words", [
    ("quick", "smoke", "PROFILE=quick and QUARTO_PROFILE=smoke name different profiles"),
    (None, "smoke,quick", "QUARTO_PROFILE=smoke,quick names 2 of hw2's profiles"),
])
def test_conflicting_profiles_are_refused_in_one_line(monkeypatch, plain, quarto, words):
    monkeypatch.setenv("QUARTO_PROFILE", quarto)
    if plain:
        monkeypatch.setenv("PROFILE", plain)
    else:
        monkeypatch.delenv("PROFILE", raising=False)
    with pytest.raises(ConfigError, match=words):
        resolve_profile()


def test_the_renderer_merges_the_active_profiles_as_quarto_does(tmp_path, monkeypatch):
    (tmp_path / "_quarto.yml").write_text("project:\n  render: [a.qmd]\ntitle: Base\nformat:\n  typst:\n    toc: true\n")
    (tmp_path / "_quarto-smoke.yml").write_text("title: Smoke\nproject:\n  render: [b.qmd]\nformat:\n  typst:\n"
                                                "    toc-depth: 1\n")
    (tmp_path / "_quarto-draft.yaml").write_text("title: Draft\n")
    for name in ("a.qmd", "b.qmd"):
        (tmp_path / name).write_text("# x\n")
    monkeypatch.setenv("QUARTO_PROFILE", "smoke,draft")  # the first listed wins
    config = load_project(tmp_path).config
    assert config["title"] == "Smoke"
    assert config["project"]["render"] == ["a.qmd", "b.qmd"]  # lists are joined
    assert config["format"]["typst"] == {"toc": True, "toc-depth": 1}  # maps merged key by key
    monkeypatch.delenv("QUARTO_PROFILE")
    assert load_project(tmp_path).config["title"] == "Base"


@pytest.mark.slow
def test_render_profile_selects_hw2s_profile_and_merges_its_file(tmp_path):
    (tmp_path / "_quarto.yml").write_text("project:\n  render: [index.qmd]\ntitle: Base title\nformat: typst\n")
    (tmp_path / "_quarto-smoke.yml").write_text("title: Smoke title\n")
    (tmp_path / "index.qmd").write_text("```{python}\n#| echo: false\nfrom hw2.engine.profiles import resolve_profile\n"
                                        "print('profile', resolve_profile())\n```\n")
    env = subprocess_env(PROFILE="", QUARTO_PROFILE="")
    done = subprocess.run([sys.executable, "-m", "hw2", "render", "--engine", "hw2", "--profile", "smoke",
                           "--root", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = subprocess.run(["pdftotext", str(tmp_path / "index.pdf"), "-"], capture_output=True, text=True).stdout
    assert "Smoke title" in text and "profile smoke" in text
