"""Data and results are found from the project root, wherever a command or a document's kernel starts."""
from __future__ import annotations

from hw2.engine import paths as profiles
from hw2.engine import store


def test_a_command_started_in_a_subfolder_uses_the_project_folders(tmp_path, monkeypatch):
    (tmp_path / "_quarto.yml").write_text("project:\n  type: default\n")
    (tmp_path / "report").mkdir()
    monkeypatch.delenv("HW2_DATA_DIR", raising=False)
    monkeypatch.delenv("HW2_RESULTS_DIR", raising=False)
    for start in (tmp_path, tmp_path / "report"):
        monkeypatch.chdir(start)
        assert profiles.project_root() == tmp_path
        assert profiles.data_dir() == tmp_path / "data"
        assert store.results_dir() == tmp_path / "results"
        # A relative variable is taken from the project root too; an absolute one as it is.
        monkeypatch.setenv("HW2_DATA_DIR", "elsewhere/data")
        assert profiles.data_dir() == tmp_path / "elsewhere" / "data"
        monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path / "abs"))
        assert profiles.data_dir() == tmp_path / "abs"
        monkeypatch.delenv("HW2_DATA_DIR")


def test_outside_any_project_the_installed_project_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (profiles.project_root() / "_quarto.yml").is_file()
    assert profiles.project_root() == store.PACKAGE_DIR.parent
