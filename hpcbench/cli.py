"""The ``hpcbench`` command line: one thin command per verb.

Heavy imports (Ray, abTEM, torch) happen inside command bodies so ``hpcbench --help``
is instant. User errors print one line per problem and exit with code 2;
``--traceback`` shows the stack instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["UserError", "app", "main"]

app = typer.Typer(
    name="hpcbench",
    help="Benchmark studies of machine learning on simulated electron-microscopy images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UserError(Exception):
    """A problem the user can fix; printed as one line per problem, exit code 2."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(lines))


_state = {"traceback": False}


@app.callback()
def _options(
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full stack on errors.")
    ] = False,
) -> None:
    _state["traceback"] = traceback


StudyArg = Annotated[Path, typer.Argument(help="Study file (YAML).", show_default=False)]
SmokeOpt = Annotated[
    bool, typer.Option("--smoke", help="Merge the study's smoke: block over it (a tiny run).")
]
RootOpt = Annotated[
    Path,
    typer.Option(
        "--root",
        envvar="HPCBENCH_ROOT",
        help="Output root; the study's outputs go to ROOT/<study output>/.",
    ),
]
DEFAULT_ROOT = Path("runs")


@app.command()
def validate(study: StudyArg, smoke: SmokeOpt = False) -> None:
    """Check a study file and print a summary of what it would make."""
    from hpcbench.study import dataset_hash, load_study

    spec = load_study(study, smoke=smoke)
    typer.echo(f"{study}: valid study {spec.name!r} (seed {spec.seed})")
    for name, dataset in spec.datasets.items():
        typer.echo(
            f"  dataset {name}-{dataset_hash(spec, name)}: {dataset.size} images "
            f"{dataset.image.shape[0]}x{dataset.image.shape[1]} px, "
            f"{dataset.structure.kind} / {dataset.simulation.method}"
        )


def _report(exc: BaseException) -> int:
    from hpcbench.study import StudyError

    if _state["traceback"]:
        raise exc
    if isinstance(exc, StudyError | UserError):
        for line in exc.lines:
            typer.echo(line, err=True)
        return 2
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        typer.echo(f"error: {exc}", err=True)
        return 2
    raise exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (tests call this directly)."""
    _state["traceback"] = False
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="hpcbench", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:
        # typer vendors click (typer._click); its usage errors carry show() and exit_code.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return 2
        return _report(exc)
    return 0
