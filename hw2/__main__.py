"""Command line: `python -m hw2 runs q2`, `python -m hw2 status`, `python -m hw2 data [status|fetch|verify] [q2]`,
`python -m hw2 render`, `python -m hw2 preview`, `python -m hw2 submission`."""
from __future__ import annotations

import argparse
import sys

from hw2.engine import registry


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hw2", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", help="run the missing runs of a question's plan (papermill)")
    runs.add_argument("question", choices=[*registry.questions(), "all"], help="a question, or all of them in turn")
    runs.add_argument("--profile", default=None, help="full, quick or smoke (default: $PROFILE or auto)")
    runs.add_argument("--jobs", type=_positive, default=1, help="runs to execute at once")
    render = sub.add_parser("render", help="render the report PDF (Quarto when on PATH, else hw2's renderer)")
    render.add_argument("--root", default=".", help="the project folder (holds _quarto.yml)")
    render.add_argument("--engine", choices=["auto", "quarto", "hw2"], default="auto",
                        help="auto: quarto if it is on PATH, else hw2's own renderer")
    render.add_argument("--profile", default=None,
                        help="Quarto's project profile(s), as `quarto render --profile`: sets $QUARTO_PROFILE (smoke, "
                             "quick, full choose hw2's profile) and merges _quarto-<profile>.yml")
    preview = sub.add_parser("preview", help="render with hw2's renderer, then again on every save (report/, "
                                             "_quarto*.yml, the package, the run store)")
    preview.add_argument("--root", default=".", help="the project folder (holds _quarto.yml)")
    preview.add_argument("--profile", default=None, help="Quarto's project profile(s), as for render")
    submission = sub.add_parser("submission", help="zip the PDF and the code as hw2-group<N>.zip")
    submission.add_argument("--root", default=".", help="the project folder")
    status = sub.add_parser("status", help="which runs of a profile are current, stale (and why) or missing")
    status.add_argument("--profile", default=None, help="full, quick or smoke (default: $PROFILE or auto)")
    data = sub.add_parser("data", help="which data each question uses (status), download the real data (fetch), or "
                                       "check it against its recorded digests (verify)")
    data.add_argument("action", nargs="?", default="status", choices=["status", "fetch", "verify"],
                      help="status (the default), fetch (download whatever the profile) or verify (hash every file)")
    data.add_argument("question", nargs="?", choices=registry.questions(), help="one question (default: all)")
    data.add_argument("--profile", default=None, help="full, quick or smoke (default: $PROFILE or auto)")
    rehearse = sub.add_parser("rehearse", help="every full-profile experiment for a few steps on this machine, "
                                               "into a scratch store; step times, projections and memory")
    rehearse.add_argument("--size", choices=["few-steps", "one-step"], default="few-steps",
                          help="few-steps (the default) or one-step (the test suite's)")
    rehearse.add_argument("--store", default=None, help="the scratch run store (default: results-rehearsal/)")
    rehearse.add_argument("--jobs", type=_positive, default=2, help="runs to execute at once")
    args = parser.parse_args(argv)  # an unknown flag or extra argument is an error, never ignored

    if args.command in ("runs", "status", "data"):
        from hw2.engine.errors import UserError, os_error_line
        from hw2.engine.machine import cpu_threads
        from hw2.engine.runner import NOTHING_IN_PROGRESS, Interrupted

        try:
            cpu_threads()  # HW2_THREADS, checked once here rather than in every notebook
            _check_data_folder()
            return {"runs": _runs, "status": _status, "data": _data}[args.command](args)
        except UserError as exc:  # what the user can fix: one line, no traceback
            print(f"hw2: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a folder that is a file, a read-only or full disk: the user's to fix too
            print(f"hw2: {os_error_line(exc)}", file=sys.stderr)
            return 2
        # Ctrl-C: one line (on a line of its own, as a killed kernel may leave a progress bar unfinished)
        except Interrupted as stop:  # while notebooks ran: what was kept, and how to resume
            print(f"\n{stop}", file=sys.stderr, flush=True)
            return 130
        except KeyboardInterrupt:  # outside the notebooks (preparing data, between questions)
            print(f"\n{NOTHING_IN_PROGRESS if args.command == 'runs' else '[hw2] stopped by Ctrl-C'}", file=sys.stderr)
            return 130
    if args.command == "rehearse":
        from hw2.rehearse import main as rehearse_main

        return rehearse_main(args.size, args.store, args.jobs)
    if args.command == "render":
        from hw2.engine.render import main as render_main

        return render_main(args.root, args.engine, args.profile)
    if args.command == "preview":
        from hw2.engine.preview import main as preview_main

        return preview_main(args.root, args.profile)
    if args.command == "submission":
        from hw2.engine.submission import main as submission_main

        return submission_main(args.root)
    parser.error(f"unknown command {args.command}")
    return 2


def _check_data_folder() -> None:
    """A data folder that is a file, said once here (as the OSError it is), rather than by each question as
    "no data yet" (`status`) or as the file system's "File exists" (making a stand-in)."""
    import errno
    import os

    from hw2.engine.paths import data_dir

    folder = data_dir()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))


def _runs(args) -> int:
    from hw2.engine.runner import run_question

    questions = registry.questions() if args.question == "all" else [args.question]
    return max(run_question(q, args.profile, args.jobs) for q in questions)


def _data(args) -> int:
    return {"status": _data_status, "fetch": _fetch, "verify": _verify}[args.action](args)


# How `data` names each kind of data source, and what makes it that kind.
KINDS = {"real": ("real", "verified: its digest is the published one"),
         "standin": ("stand-in", "verified: hw2's own, as its record says"),
         "custom": ("custom data", "matches neither the published digest nor a stand-in's record")}


def _data_status(args) -> int:
    """`data` (`data status`): per question, the data the profile uses, whether it is there, and how to get the
    real data."""
    from hw2.engine.fetch import human_bytes
    from hw2.engine.profiles import resolve_profile
    from hw2.engine.runner import experiment_module

    profile = resolve_profile(args.profile)
    for question in [args.question] if args.question else registry.questions():
        state = experiment_module(question).data_status(profile)
        head = f"{question} (profile {profile}):"
        if not state.path:
            print(f"{head} no data set ({state.source})")
            continue
        if state.source is None:
            print(f"{head} absent from {state.path}; it will use {state.absent}")
        else:
            kind, verified = KINDS[state.source.split("-", 1)[0]]
            print(f"{head} {kind}, {state.path}, {human_bytes(_size(state.path))}, {state.source}: present, {verified}")
        if state.real:
            print(f"  the real data: {state.real}")
    return 0


def _size(path: str) -> int:
    import os

    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(top, name)) for top, _, names in os.walk(path) for name in names)


def _fetch(args) -> int:
    """`data fetch`: download each question's real data, whatever the profile; one line per question."""
    from hw2.engine.runner import experiment_module

    for question in [args.question] if args.question else registry.questions():
        source = experiment_module(question).fetch_data()
        if source is None:
            print(f"{question}: no data set to download")
        else:
            print(f"{question}: {source} ({KINDS[source.split('-', 1)[0]][0]})")
    return 0


def _verify(args) -> int:
    """`data verify`: each question's data checked in full (every file hashed again); status 1 if any differs."""
    from hw2.engine.profiles import resolve_profile
    from hw2.engine.runner import experiment_module

    profile, differs = resolve_profile(args.profile), False
    for question in [args.question] if args.question else registry.questions():
        module = experiment_module(question)
        source = module.data_source(profile)
        if source is None:
            print(f"{question}: no data yet for profile {profile} (`PROFILE={profile} make runs-{question}` makes it)")
            continue
        changed = module.verify_data(profile)
        differs = differs or bool(changed)
        print(f"{question}: {source}: " + (f"{len(changed)} file(s) differ from the record: {', '.join(changed[:10])}"
                                           + (" ..." if len(changed) > 10 else "") if changed else "verified"))
    return 1 if differs else 0


def _status(args) -> int:
    from hw2.engine.profiles import resolve_profile
    from hw2.engine.status import report

    text, _, problems = report(resolve_profile(args.profile))
    print(text)
    for problem in problems:
        print(f"hw2: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
