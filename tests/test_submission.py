"""`hw2 submission`: the zip holds the PDF and the code only, and refuses what would cost points."""
import json
import os
import subprocess
import time
import zipfile

import pytest

from hw2.engine.submission import SubmissionError, build

AUTHORS = """group: 7
students:
  - {name: Rita Teste, number: 99001, email: rita@example.org, contribution: "wrote Question 1"}
  - {name: Zeca Prova, number: 99002, email: zeca@example.org, contribution: "wrote Questions 2 and 3"}
"""


@pytest.fixture
def project(tmp_path):
    files = {"hw2/__init__.py": "", "hw2/train.py": "x = 1\n", "hw2/data/loader.py": "y = 2\n",
             "hw2/engine/typst/typst-template.typ": "#let article(doc) = doc\n",
             "analysis/q2.ipynb": "{}", "report/index.qmd": "# Q\n", "report/authors.yml": AUTHORS,
             "tests/test_x.py": "", "_quarto.yml": "project: {}\n", "README.md": "hw2\n", "Makefile": "all:\n",
             "pyproject.toml": "[project]\n", "GUIDE.md": "# Where\n",
             "hw2/data/__init__.py": "", "data/octmnist.npz": "big", "results/q2/run/summary.json": "{}",
             ".venv/bin/python": "", "hw2/__pycache__/train.cpython-311.pyc": "", "report/_figures/fig.png": "",
             "report/index_files/figure-typst/a.png": "", "report/index.typ": ""}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".hw2_cache").mkdir()
    (tmp_path / ".hw2_cache" / "render.json").write_text(
        json.dumps({"profile": "full", "results": str(tmp_path / "results")}))
    pdf = tmp_path / "_output" / "hw2-report.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(b"%PDF-1.7\n")
    later = time.time() + 5
    os.utime(pdf, (later, later))
    return tmp_path


def test_zip_holds_the_pdf_and_the_code_only(project):
    out = build(project)
    assert out == project / "hw2-group7.zip"
    names = set(zipfile.ZipFile(out).namelist())
    assert "hw2-group7/hw2-group7-report.pdf" in names
    for kept in ("hw2/train.py", "hw2/data/loader.py", "hw2/engine/typst/typst-template.typ", "analysis/q2.ipynb",
                 "report/index.qmd", "report/authors.yml", "tests/test_x.py", "_quarto.yml", "README.md",
                 "Makefile", "pyproject.toml", "GUIDE.md"):
        assert f"hw2-group7/{kept}" in names, kept
    inside = [n.split("/", 1)[1] for n in names]
    for top in ("data/", "results/", ".venv/"):
        assert not any(n.startswith(top) for n in inside), top
    for part in ("__pycache__", "_figures", "index_files", "index.typ"):
        assert not any(part in n for n in inside), part


def test_no_data_results_or_large_file_is_packed_wherever_it_was_left_and_the_listing_says_so(project, capsys):
    from hw2.engine.submission import main

    # A command once started in report/ left data there; a results folder lies in analysis/; a big output file.
    (project / "report" / "data").mkdir()
    (project / "report" / "data" / "octmnist.npz").write_bytes(b"x" * 1000)
    (project / "analysis" / "results" / "q2").mkdir(parents=True)
    (project / "analysis" / "results" / "q2" / "history.csv").write_text("epoch\n")
    (project / "tests" / "big.bin").write_bytes(b"\0" * (2 << 20))
    later = time.time() + 10
    os.utime(project / "_output" / "hw2-report.pdf", (later, later))
    assert main(str(project)) == 0
    inside = {n.split("/", 1)[1] for n in zipfile.ZipFile(project / "hw2-group7.zip").namelist()}
    assert "hw2/data/loader.py" in inside, "the package's data modules are code"
    assert not {"report/data/octmnist.npz", "analysis/results/q2/history.csv", "tests/big.bin"} & inside
    out = capsys.readouterr().out
    assert "packed: hw2-group7-report.pdf, GUIDE.md," in out and "hw2/ 5 files" in out
    assert "left out: report/data/octmnist.npz (data folder report/data/)" in out
    assert "left out: analysis/results/q2/history.csv (results folder analysis/results/)" in out
    assert "left out: tests/big.bin (2.0 MiB, over the 1 MiB limit)" in out


def test_refuses_a_stale_pdf(project):
    later = time.time() + 60
    os.utime(project / "report" / "index.qmd", (later, later))
    with pytest.raises(SubmissionError, match=r"older than its sources \(report/index.qmd\).*make report"):
        build(project)


def test_refuses_a_missing_pdf(project):
    (project / "_output" / "hw2-report.pdf").unlink()
    with pytest.raises(SubmissionError, match="run `make report` first"):
        build(project)


def test_refuses_a_missing_contribution_statement(project):
    (project / "report" / "authors.yml").write_text(AUTHORS.replace('"wrote Question 1"', '""'))
    with pytest.raises(SubmissionError, match="no contribution written for Rita Teste.*10-point penalty"):
        build(project)
    (project / "report" / "authors.yml").unlink()
    with pytest.raises(SubmissionError, match="authors.yml is missing"):
        build(project)
    assert not (project / "hw2-group7.zip").exists()


def test_refuses_the_example_group(project):
    (project / "report" / "authors.yml").write_text("example: true\n" + AUTHORS)
    with pytest.raises(SubmissionError, match="still holds the example group"):
        build(project)


def test_the_graders_guide_names_files_and_functions_that_exist():
    """GUIDE.md maps every sub-question to code: each path it names exists and holds the names it lists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    rows = [line for line in (root / "GUIDE.md").read_text().splitlines() if line.startswith("| Q")]
    assert [row.split()[1] for row in rows] == [f"Q{q}.{s}" for q, n in ((1, 4), (2, 3), (3, 4))
                                                 for s in range(1, n + 1)]
    for row in rows:
        current = None
        for token in re.findall(r"`([^`]+)`", row):
            if "/" in token:
                current = root / token
                assert current.is_file(), token
            elif current is not None and current.suffix == ".py":
                name = token.split("(")[0].split(".")[-1]
                if name not in ("get_number_trainable_params",):  # the statement's name, quoted for graders
                    assert re.search(rf"\b{re.escape(name)}\b", current.read_text()), (token, current)


def _rendered_with(project, profile):
    record = project / ".hw2_cache" / "render.json"
    record.write_text(json.dumps({"profile": profile, "results": str(project / "results")}))
    os.utime(record, (time.time() - 10, time.time() - 10))


def test_refuses_a_smoke_pdf_and_warns_about_a_quick_one(project, capsys):
    _rendered_with(project, "smoke")
    with pytest.raises(SubmissionError, match="rendered from the smoke profile"):
        build(project)
    _rendered_with(project, "quick")
    assert build(project).is_file()
    assert "shows the quick profile, not the homework's protocol" in capsys.readouterr().err


def test_refuses_a_pdf_rendered_before_newer_runs(project):
    summary = project / "results" / "q2_cnn" / "lr0.1-full-abc" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"profile": "full"}))
    later = time.time() + 60
    os.utime(summary, (later, later))
    with pytest.raises(SubmissionError, match=r"rendered before 1 run\(s\) of profile full finished \(lr0.1-full-abc\)"):
        build(project)
    (project / ".hw2_cache" / "render.json").unlink()
    with pytest.raises(SubmissionError, match="no record of a finished render"):
        build(project)


def test_a_malformed_authors_file_is_reported_at_its_line(project):
    (project / "report" / "authors.yml").write_text(AUTHORS.replace("Rita Teste", "Rita: Teste"))
    with pytest.raises(SubmissionError, match=r"^report/authors.yml:3:16: not valid YAML \(expected ',' or '}', but "
                                              r"got ':'\)\. Fix it there: .*goes in quotes$"):
        build(project)
    assert not (project / "hw2-group7.zip").exists()


def test_every_packed_file_is_named(project, capsys):
    from hw2.engine.submission import main

    (project / "report" / "notes.md").write_text("mine\n")
    assert main(str(project)) == 0
    out = capsys.readouterr().out
    names = zipfile.ZipFile(project / "hw2-group7.zip").namelist()
    assert "[hw2]   report/: authors.yml, index.qmd, notes.md\n" in out
    assert "[hw2]   hw2/: __init__.py, data/__init__.py, data/loader.py, engine/typst/typst-template.typ, train.py\n" \
        in out
    for name in names:  # each file of the zip, by its name below its folder
        rel = name.split("/", 1)[1]
        assert rel.split("/", 1)[-1] in out, rel


SECRETS = ("report/.env", "hw2/credentials.json", "hw2/q3/api_token.txt", "tests/id_rsa", "analysis/server.pem")


def test_files_whose_names_look_like_secrets_are_refused_unless_authors_yml_allows_them(project):
    for name in SECRETS:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("s3cr3t\n")
    with pytest.raises(SubmissionError) as caught:
        build(project)
    message = str(caught.value)
    assert "\n" not in message and "5 file(s) whose names look like secrets" in message
    assert all(name in message for name in SECRETS)
    assert "`submission: allow:` in report/authors.yml lists it" in message
    assert not (project / "hw2-group7.zip").exists()
    (project / "report" / "authors.yml").write_text(AUTHORS + "submission:\n  allow: [report/.env]\n")
    with pytest.raises(SubmissionError, match=r"^4 file\(s\) .*: hw2/credentials.json, hw2/q3/api_token.txt, "):
        build(project)
    for name in SECRETS[1:]:
        (project / name).unlink()
    inside = {n.split("/", 1)[1] for n in zipfile.ZipFile(build(project)).namelist()}
    assert "report/.env" in inside


def test_in_a_git_repository_untracked_code_is_packed_and_said_so_but_ignored_files_never(project, capsys):
    from hw2.engine.submission import main

    (project / ".gitignore").write_text("/data/\n/results/\n.venv/\n__pycache__/\nhw2/scratch.py\nreport/.env\n"
                                        "_output/\n.hw2_cache/\n")
    (project / "hw2" / "scratch.py").write_text("ignored\n")
    (project / "report" / ".env").write_text("KEY=s3cr3t\n")  # ignored: neither packed nor refused
    (project / "hw2" / "new_model.py").write_text("forgot to git add\n")
    (project / "hw2" / "credentials.json").write_text("{}\n")  # neither tracked nor ignored: refused
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", ".gitignore", "hw2/__init__.py", "hw2/train.py", "report", "analysis", "tests",
                    "_quarto.yml", "README.md", "Makefile", "pyproject.toml", "GUIDE.md"], cwd=project, check=True)
    later = time.time() + 60
    os.utime(project / "_output" / "hw2-report.pdf", (later, later))
    with pytest.raises(SubmissionError, match=r"^1 file\(s\) .*: hw2/credentials.json\. Move them out of the project, "
                                              r"or make git ignore them \(\.gitignore\);"):
        build(project)
    (project / "hw2" / "credentials.json").unlink()
    assert main(str(project)) == 0
    inside = {n.split("/", 1)[1] for n in zipfile.ZipFile(project / "hw2-group7.zip").namelist()}
    assert {"hw2/new_model.py", "hw2/data/loader.py", "hw2/train.py", ".gitignore"} <= inside
    assert not {"hw2/scratch.py", "report/.env"} & inside
    out = capsys.readouterr().out
    assert "new_model.py (untracked)" in out and "train.py (untracked)" not in out
    assert "packed file(s) are untracked: git does not version them yet (`git add` them): hw2/data/__init__.py, " \
           "hw2/data/loader.py" in out
    assert "left out: hw2/scratch.py (git ignores it)" in out and "left out: report/.env (git ignores it)" in out
