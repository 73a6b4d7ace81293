"""End to end: documents of the Quarto subset rendered to PDF by hw2's renderer and read back with pdftotext."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hw2.engine.render import RenderError, load_project, render

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())  # one line: layout spacing does not matter here


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_quarto_minimal_example_renders_as_quarto_does(tmp_path):
    root = tmp_path / "example"
    shutil.copytree(FIXTURES / "quarto-minimal", root)
    pdfs = render(root, log=lambda *a: None)
    assert pdfs == [root / "_output" / "report" / "hw2-report.pdf"]  # Quarto keeps the document's folder
    text = pdf_text(pdfs[0])
    for expected in ["Deep Learning — Homework 2", "Group 0", "Student One", "one@example.org",
                     "1 Question 1", "2 Question 2", "3 Question 3",
                     "see Equation 1 and Section 2", "Figure 1: Training loss against epoch.",
                     "Table 1: All runs.", "See Figure 1 and Table 1.", "Figure 2: Validation similarity.",
                     "refers back to Figure 1; best accuracy 0.830"]:
        assert expected in text, expected
    assert (root / "_output/report/hw2-report.typ").is_file()  # keep-typ
    typ = (root / "_output/report/hw2-report.typ").read_text()
    assert "$M = 6$" in typ  # inline value inside math
    assert '#ref(<fig-loss>, supplement: [Figure])' in typ and "<tbl-runs>" in typ and "<eq-kernel>]" in typ
    assert not (root / "report/index_files").exists() and not (root / "report/index.typ").exists()


FEATURES = {
    "_quarto.yml": "project:\n  output-dir: _out\n  render: [report/index.qmd]\n"
                   "title: Features\nbibliography: report/refs.bib\n"
                   "format:\n  typst:\n    keep-typ: true\n    number-sections: true\n"
                   "execute:\n  echo: false\n",
    "report/refs.bib": "@book{knuth1984, title={The TeXbook}, author={Knuth, Donald}, year={1984}}\n",
    "report/data.txt": "read-from-the-document-folder\n",
    "report/index.qmd": """# Intro {#sec-intro}

```{python}
#| echo: true
data = open("data.txt").read().strip()
print("printed-visible")
```

```{python}
#| output: false
print("printed-hidden")
```

```{python}
#| include: false
hidden_marker = 41
print("include-hidden")
```

The value is `{python} hidden_marker + 1`, $M = `{python} 2 * 3`$, and `{python} data`.

$$
a^2 + b^2 = c^2
$$ {#eq-pyth}

$$
x = 1
$$

```{python}
#| label: fig-line
#| fig-cap: "A line with a caption."
import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.xlabel("x"); plt.ylabel("y"); plt.show()
```

```{python}
#| label: tbl-small
#| tbl-cap: "Small table."
from IPython.display import Markdown
Markdown("| a | b |\\n|---|---|\\n| 1 | 2 |")
```

{{< include _more.qmd >}}
""",
    "report/_more.qmd": "# More {#sec-more}\n\nSee @fig-line, @tbl-small, @eq-pyth and @sec-intro [@knuth1984].\n",
}


def test_cell_options_inline_values_and_cross_references(tmp_path):
    root = write(tmp_path, FEATURES)
    (pdf,) = render(root, log=lambda *a: None)
    text = pdf_text(pdf)
    assert 'data = open("data.txt").read().strip()' in text  # echo: true shows the code
    assert "printed-visible" in text
    for hidden in ("printed-hidden", "include-hidden", "hidden_marker"):
        assert hidden not in text, hidden
    assert "The value is 42" in text and "read-from-the-document-folder" in text
    assert "Figure 1: A line with a caption." in text and "Table 1: Small table." in text
    assert "See Figure 1, Table 1, Equation 1 and Section 1" in text
    assert "(1)" in text and "(2)" not in text  # only the labelled equation is numbered
    assert "Knuth" in text  # the bibliography
    typ = (root / "_out/report/index.typ").read_text()
    assert "$M = 6$" in typ


def test_errors_in_code_name_the_file_and_line(tmp_path):
    root = write(tmp_path, {"_quarto.yml": "project:\n  render: [index.qmd]\n",
                            "index.qmd": "# A\n\n{{< include _part.qmd >}}\n",
                            "_part.qmd": "Text.\n\n```{python}\nraise ValueError('boom')\n```\n"})
    with pytest.raises(RenderError, match=r"^_part.qmd:3: the code cell raised ValueError: boom"):
        render(root, log=lambda *a: None)
    write(root, {"_part.qmd": "Text `{python} undefined_name + 1`.\n"})
    with pytest.raises(RenderError, match=r"^_part.qmd:1: inline expression `undefined_name \+ 1` raised NameError"):
        render(root, log=lambda *a: None)
    assert load_project(root).documents == [root / "index.qmd"]


def test_a_missing_contribution_stops_the_build(tmp_path):
    root = contribution_project(tmp_path, "students:\n  - {name: Rita Teste, number: 1, email: r@example.org, contribution: ''}\n"
                                "group: 3\n")
    with pytest.raises(RenderError, match=r"^report/_contributions.qmd:3: the code cell raised ContributionError: "
                                          r".*no contribution written for Rita Teste.*10-point penalty"):
        render(root, log=lambda *a: None)
    (root / "report/authors.yml").write_text("students:\n  - {name: Rita Teste, number: 1, email: r@example.org, "
                                             "contribution: wrote everything}\ngroup: 3\n")
    (pdf,) = render(root, log=lambda *a: None)
    assert "Contributions of the group members Rita Teste (1) wrote everything." in pdf_text(pdf)


def test_a_malformed_authors_file_is_reported_at_its_own_line(tmp_path):
    root = contribution_project(tmp_path, "group: 3\nstudents:\n  - name: Rita Teste\n    number: 1\n"
                                          "   email: r@example.org\n")
    with pytest.raises(RenderError, match=r"^report/authors.yml:5:4: not valid YAML \(expected <block end>, but "
                                          r"found '<block mapping start>'\)\. Fix it there: .* \(raised by the code "
                                          r"cell at report/_contributions.qmd:3\)$") as caught:
        render(root, log=lambda *a: None)
    assert "Traceback" not in str(caught.value)


RAW = "```{=typst}\n#let shade = luma(90)\n#text(fill: shade)[fine]\n```\n"


def test_a_typst_error_in_a_raw_block_names_the_qmd_line(tmp_path):
    root = write(tmp_path, {"_quarto.yml": "project:\n  render: [index.qmd]\n",
                            # the same block twice, and one shown inside a code block: neither is at fault
                            "index.qmd": f"# A\n\n{RAW}\n````markdown\n{RAW}````\n\n{{{{< include _part.qmd >}}}}\n",
                            "_part.qmd": f"Text.\n\n{RAW}\n{RAW.replace('luma(90)', 'nocolor')}"})
    with pytest.raises(RenderError) as caught:
        render(root, log=lambda *a: None)
    message = str(caught.value)
    assert message.startswith("_part.qmd:9: typst cannot compile this line of a raw {=typst} block: unknown "
                              "variable: nocolor. Fix the Typst code there.\n"), message
    assert "┌─ _part.qmd:9 (generated index.typ:" in message and "#let shade = nocolor" in message


def test_a_typst_error_outside_raw_blocks_names_the_generated_line(tmp_path):
    root = write(tmp_path, {"_quarto.yml": "project:\n  render: [index.qmd]\n  output-dir: _out\n"
                                           "format:\n  typst:\n    keep-typ: true\n",
                            "index.qmd": f"# A\n\n{RAW}\nAn inline `#nocolor`{{=typst}} here.\n"})
    with pytest.raises(RenderError, match=r"^_out/index.typ:(\d+): typst cannot compile this line of the Typst that "
                                          r"hw2 made from the Markdown \(not a raw \{=typst\} block.*unknown "
                                          r"variable: nocolor\. Look at that line\.\n") as caught:
        render(root, log=lambda *a: None)
    number = int(re.match(r"_out/index.typ:(\d+)", str(caught.value)).group(1))
    assert "#nocolor" in (root / "_out/index.typ").read_text().splitlines()[number - 1]


def test_keep_typ_without_an_output_dir_keeps_the_typ_beside_the_document(tmp_path):
    root = write(tmp_path, {"_quarto.yml": "project:\n  render: [index.qmd]\nformat:\n  typst:\n    keep-typ: true\n",
                            "index.qmd": "# A\n\nkept-marker\n"})
    assert render(root, log=lambda *a: None) == [root / "index.pdf"]
    assert "kept-marker" in (root / "index.typ").read_text()


def contribution_project(tmp_path: Path, authors: str) -> Path:
    """A project holding the report's own contribution document and the given authors.yml."""
    repo = Path(__file__).resolve().parent.parent
    return write(tmp_path, {"_quarto.yml": "project:\n  render: [report/index.qmd]\nexecute:\n  echo: false\n",
                            "report/index.qmd": "{{< include _contributions.qmd >}}\n",
                            "report/_contributions.qmd": (repo / "report/_contributions.qmd").read_text(),
                            "report/authors.yml": authors})
