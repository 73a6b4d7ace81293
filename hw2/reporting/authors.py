"""`report/authors.yml`: the group, its students and who did what (the contribution statement the homework
requires), and the files the submission may pack although their names look like secrets. A file that cannot be
read is a ContributionError at its own line and column, naming the field and saying what to write there, since
students edit it by hand and a render or a submission stops on it. Its text reaches the report only escaped
(`students_table`, and `wording.contribution_paragraph`): a name is shown as written, never read as Markdown or Typst.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hw2.engine.errors import UserError
from hw2.engine.paths import project_root
from hw2.reporting.markdown import markdown_text


class ContributionError(UserError, ValueError):
    """The group's contribution statement is missing or incomplete."""


@dataclass
class Student:
    name: str
    number: str
    email: str
    contribution: str


@dataclass
class Group:
    number: int
    students: list[Student]
    example: bool
    source: str  # the file, as messages name it
    allow: tuple[str, ...] = ()  # `submission: allow:`: files the submission packs though their names look secret


AUTHORS_KEYS = ("group", "students", "example", "submission")
STUDENT_KEYS = ("name", "number", "email", "contribution")
SUBMISSION_KEYS = ("allow",)


def load_authors(path: Path | None = None) -> Group:
    """`report/authors.yml`: the group number and its students (name, number, email, contribution). Anything
    else is a ContributionError at the file's line and column, saying what to write there."""
    path = Path(path) if path else project_root() / "report" / "authors.yml"
    shown = _shown(path)
    if not path.is_file():
        raise ContributionError(f"{shown} is missing: it holds the group, the students and who did what "
                                f"(the contribution statement; missing, it costs 10 points)")
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ContributionError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context
        hint = ("indent with spaces: YAML does not allow tabs" if "'\\t'" in problem else
                "a value starting with that character goes in quotes" if "cannot start any token" in problem else
                "each student starts with `  - name: ...` under `students:`, their other keys indented as far as "
                "`name`, and a value holding `: ` or ` #` goes in quotes")
        raise ContributionError(f"{shown}:{mark.line + 1}:{mark.column + 1}: not valid YAML ({problem}). Fix it "
                                f"there: {hint}") from None
    except yaml.YAMLError as exc:
        raise ContributionError(f"{shown}: not valid YAML: {exc}") from None

    def at(node) -> str:
        return f"{shown}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    if not isinstance(root, yaml.MappingNode):
        where = at(root) if root is not None else f"{shown}:1:1"
        raise ContributionError(f"{where}: authors.yml holds the keys `group:` and `students:`, not "
                                f"{_yaml_kind(root)}")
    top = _yaml_mapping(root, AUTHORS_KEYS, "authors.yml", at)
    if "students" not in top:
        raise ContributionError(f"{shown}: no `students:` list; add one `- name: ...` entry per student")
    students_node = top["students"]
    if isinstance(students_node, yaml.SequenceNode) and not students_node.value:
        raise ContributionError(f"{at(students_node)}: `students` is an empty list: add one `- name: ...` entry per "
                                f"student")
    if not isinstance(students_node, yaml.SequenceNode):
        raise ContributionError(f"{at(students_node)}: `students` must list the students, one `- name: ...` entry "
                                f"each, not {_yaml_kind(students_node)}")
    students = []
    for i, node in enumerate(students_node.value, start=1):
        if not isinstance(node, yaml.MappingNode):
            raise ContributionError(f"{at(node)}: student {i} must be the keys {', '.join(STUDENT_KEYS)}, written "
                                    f"`- name: ...` with the others indented below it, not {_yaml_kind(node)}")
        fields = _yaml_mapping(node, STUDENT_KEYS, f"student {i}", at)
        values = {}
        for key in STUDENT_KEYS:
            value = fields.get(key)
            if value is not None and not isinstance(value, yaml.ScalarNode):
                raise ContributionError(f"{at(value)}: student {i}'s `{key}` must be text, not {_yaml_kind(value)}"
                                        + (" (write it on one line, or after `>` on the lines below)"
                                           if key == "contribution" else ""))
            # the text as written (`name: Yes` is a name, not True), none where the key is empty or null
            values[key] = "" if _yaml_value(value) is None else " ".join(value.value.split())
        missing = [k for k in ("name", "number", "email") if not values[k]]
        if missing:
            raise ContributionError(f"{at(node)}: student {i} has no {', '.join(missing)}: write "
                                    + ", ".join(f"`{k}: ...`" for k in missing))
        students.append(Student(**values))
    if "group" not in top:
        raise ContributionError(f"{shown}: no `group:`; add your group number, e.g. `group: 7`")
    group = _yaml_value(top["group"])
    if isinstance(group, str) and group.strip().isdigit():
        group = int(group)
    if isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise ContributionError(f"{at(top['group'])}: `group` must be your group's number, e.g. `group: 7`, not "
                                f"{_yaml_kind(top['group'])}")
    example = _yaml_value(top["example"]) if "example" in top else False
    if not isinstance(example, bool):
        raise ContributionError(f"{at(top['example'])}: `example` must be true or false (delete the line once "
                                f"the group is yours), not {_yaml_kind(top['example'])}")
    allow = _allowed(top["submission"], at) if "submission" in top else ()
    return Group(group, students, example, shown, allow)


def _allowed(node, at) -> tuple[str, ...]:
    """`submission: allow: [paths]`: the files, relative to the project folder, that the submission may pack
    although their names look like secrets."""
    if not isinstance(node, yaml.MappingNode):
        raise ContributionError(f"{at(node)}: `submission` must hold `allow:`, the list of files to pack although "
                                f"their names look like secrets, not {_yaml_kind(node)}")
    allow = _yaml_mapping(node, SUBMISSION_KEYS, "`submission`", at).get("allow")
    if allow is None or (isinstance(allow, yaml.ScalarNode) and _yaml_value(allow) is None):
        return ()
    if not isinstance(allow, yaml.SequenceNode) or not all(isinstance(n, yaml.ScalarNode) for n in allow.value):
        raise ContributionError(f"{at(allow)}: `submission: allow:` must list file paths, one `- path` each "
                                f"(e.g. `- report/tokens.csv`), not {_yaml_kind(allow)}")
    return tuple(n.value.strip().removeprefix("./") for n in allow.value)


def _shown(path: Path) -> str:
    """`path` relative to the project folder holding it (as messages and editors name files), else as given."""
    path = Path(path).resolve()
    root = next((folder for folder in path.parents if (folder / "_quarto.yml").is_file()), None)
    return path.relative_to(root).as_posix() if root else str(path)


def _yaml_mapping(node, keys: tuple[str, ...], owner: str, at) -> dict:
    """{key: value node} of a YAML mapping; an unknown or repeated key is an error at its line."""
    found = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in keys:
            raise ContributionError(f"{at(key_node)}: {owner} has an unknown key {key_node.value!r} (the keys are "
                                    f"{', '.join(keys)}): a misspelt key? fix its name or remove it")
        if key in found:
            raise ContributionError(f"{at(key_node)}: {owner} has `{key}` twice; keep one")
        found[key] = value_node
    return found


def _yaml_value(node):
    """The Python value of a YAML node (None for a missing one)."""
    if node is None:
        return None
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _yaml_kind(node) -> str:
    if node is None:
        return "an empty file"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a set of keys"
    return "nothing" if _yaml_value(node) is None else repr(node.value)


def require_contributions(group: Group) -> Group:
    """`group`, once every student has a contribution written (the statement's paragraph on who did what, whose
    absence costs 10 points); else a ContributionError naming those without one."""
    empty = [s.name for s in group.students if not s.contribution]
    if empty:
        raise ContributionError(
            f"{group.source}: no contribution written for {', '.join(empty)}. The statement requires one "
            f"paragraph saying what each member did (10-point penalty if it is missing): fill in "
            f"`contribution:` for every student")
    return group


def students_table(group: Group):
    """The group's students as a Markdown table (name, number, e-mail), each field shown as written."""
    import pandas as pd
    from IPython.display import Markdown

    students = pd.DataFrame([{"Student": markdown_text(s.name), "Number": markdown_text(s.number),
                              "E-mail": markdown_text(s.email)} for s in group.students])
    return Markdown(students.to_markdown(index=False, disable_numparse=True) + "\n")
