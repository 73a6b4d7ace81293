"""report/authors.yml that cannot be read is reported at its own line and column, saying what to write there."""
import pytest

from hw2.reporting.authors import ContributionError, load_authors, require_contributions

GOOD = """group: 7
students:
  - name: Rita Teste
    number: 99001
    email: rita@example.org
    contribution: >
      wrote Question 1
"""


@pytest.fixture
def authors(tmp_path):
    (tmp_path / "_quarto.yml").write_text("project: {}\n")
    (tmp_path / "report").mkdir()
    return tmp_path / "report" / "authors.yml"


@pytest.mark.parametrize("text, message", [
    # YAML syntax: a key indented one space short, an unquoted ": ", a tab
    (GOOD.replace("    email", "   email"), r"report/authors.yml:5:4: not valid YAML \(expected <block end>.*indented"),
    (GOOD.replace("Rita Teste", "Rita: Teste"), r"report/authors.yml:3:15: not valid YAML \(mapping values are not "
                                                r"allowed here\).*goes in quotes"),
    (GOOD.replace("  - name", "\t- name"), r"report/authors.yml:3:1: not valid YAML .*YAML does not allow tabs"),
    # wrong types
    (GOOD.replace("group: 7", "group: seven"), r"report/authors.yml:1:8: `group` must be your group's number, "
                                               r"e.g. `group: 7`, not 'seven'"),
    (GOOD.replace("number: 99001", "number: [99001, 99002]"), r"report/authors.yml:4:13: student 1's `number` "
                                                              r"must be text, not a list"),
    (GOOD.replace("students:\n", "students: everyone\n").split("  - ")[0],
     r"report/authors.yml:2:11: `students` must list the students, one `- name: ...` entry each, not 'everyone'"),
    (GOOD.replace("students:\n", "students: []\n").split("  - ")[0],
     r"^report/authors.yml:2:11: `students` is an empty list: add one `- name: ...` entry per student$"),
    (GOOD.replace("Rita Teste", "@Rita"), r"report/authors.yml:3:11: not valid YAML \(found character '@' that "
                                          r"cannot start any token\)\. Fix it there: a value starting with that "
                                          r"character goes in quotes"),
    (GOOD + "submission:\n  allow: report/.env\n", r"report/authors.yml:9:10: `submission: allow:` must list "
                                                     r"file paths"),
    (GOOD + "submission:\n  allwo: [report/.env]\n", r"report/authors.yml:9:3: `submission` has an unknown key "
                                                       r"'allwo' \(the keys are allow\)"),
    ("group: 7\nstudents:\n  - Rita Teste\n", r"report/authors.yml:3:5: student 1 must be the keys name, number, "
                                              r"email, contribution"),
    (GOOD + "example: maybe\n", r"report/authors.yml:8:10: `example` must be true or false"),
    ("- group 7\n", r"report/authors.yml:1:1: authors.yml holds the keys `group:` and `students:`, not a list"),
    # missing or misspelt fields
    (GOOD.replace("    email: rita@example.org\n", ""), r"report/authors.yml:3:5: student 1 has no email: write "
                                                        r"`email: ...`"),
    (GOOD.replace("contribution", "contributon"), r"report/authors.yml:6:5: student 1 has an unknown key "
                                                  r"'contributon' \(the keys are name, number, email, contribution\)"),
    (GOOD.replace("group: 7\n", ""), r"^report/authors.yml: no `group:`; add your group number, e.g. `group: 7`$"),
])
def test_a_malformed_authors_file_is_reported_at_its_line(authors, text, message):
    authors.write_text(text)
    with pytest.raises(ContributionError, match=message):
        load_authors(authors)


def test_a_good_file_reads_as_written(authors):
    authors.write_text(GOOD.replace("Rita Teste", "Yes"))  # a name is text, even one YAML would read as true
    group = load_authors(authors)
    assert (group.number, group.example) == (7, False)
    assert [(s.name, s.number, s.email, s.contribution) for s in group.students] == [
        ("Yes", "99001", "rita@example.org", "wrote Question 1")]


def test_every_student_needs_a_contribution(authors):
    authors.write_text(GOOD.replace("contribution: >\n      wrote Question 1\n", "contribution:\n"))
    group = load_authors(authors)  # the title page reads it
    with pytest.raises(ContributionError, match=r"no contribution written for Rita Teste\. .*10-point penalty"):
        require_contributions(group)  # the statement and `make submission` require it


def test_the_submissions_allow_list_is_read(authors):
    authors.write_text(GOOD + "submission:\n  allow:\n    - report/.env\n    - ./hw2/tokens.py\n")
    assert load_authors(authors).allow == ("report/.env", "hw2/tokens.py")
    authors.write_text(GOOD)
    assert load_authors(authors).allow == ()
