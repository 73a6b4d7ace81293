"""`python -m hw2 preview`: a saved .qmd gives a new PDF with the new sentence; a broken cell prints its file and
line and keeps the last good PDF; the pre-render step runs once, not on every save."""
import signal
import subprocess
import sys
import time

import pytest
from conftest import subprocess_env

pytestmark = pytest.mark.slow

DOCUMENT = "# Preview\n\n```{python}\nanswer = 6 * 7\n```\n\nThe answer is `{python} answer`.\n"


def pdf_text(pdf) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout


def wait_for(what, timeout: float = 180):
    end = time.time() + timeout
    while time.time() < end:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_preview_renders_each_save_and_keeps_the_last_good_pdf_on_an_error(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "_quarto.yml").write_text(
        "project:\n  output-dir: _output\n  render: [report/index.qmd]\n"
        "  pre-render: python -c \"open('pre-render.log', 'a').write('ran ')\"\n"
        "format:\n  typst:\n    output-file: preview.pdf\nexecute:\n  echo: false\n")
    doc = tmp_path / "report" / "index.qmd"
    doc.write_text(DOCUMENT)
    pdf = tmp_path / "_output" / "preview.pdf"
    log = tmp_path / "preview.log"
    with open(log, "w") as out:
        preview = subprocess.Popen([sys.executable, "-m", "hw2", "preview", "--root", str(tmp_path)], stdout=out,
                                   stderr=subprocess.STDOUT, env=subprocess_env(PROFILE="smoke", PYTHONUNBUFFERED=1))
    try:
        wait_for(lambda: pdf.is_file() and "The answer is 42." in pdf_text(pdf))
        doc.write_text(DOCUMENT + "\nA sentence saved while the preview runs.\n")
        wait_for(lambda: "A sentence saved while the preview runs." in pdf_text(pdf))
        wait_for(lambda: log.read_text().count("rendered in") == 2)
        assert "report/index.qmd: ran no cell" in log.read_text()  # the prose edit reused the cell
        doc.write_text(DOCUMENT.replace("6 * 7", "6 * undefined_name") + "\nA sentence that never shows.\n")
        wait_for(lambda: "the render failed" in log.read_text())
        assert "report/index.qmd:3: the code cell raised NameError" in log.read_text()
        assert "A sentence saved while the preview runs." in pdf_text(pdf)  # the last good PDF
        assert (tmp_path / "pre-render.log").read_text() == "ran "  # once, not on every save
    finally:
        preview.send_signal(signal.SIGINT)
        assert preview.wait(timeout=30) == 130
    assert "stopped by Ctrl-C" in log.read_text()
