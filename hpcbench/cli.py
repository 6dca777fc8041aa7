"""The ``hpcbench`` command line: one thin command per verb.

Heavy imports (Ray, abTEM, torch) happen inside command bodies so ``hpcbench --help``
is instant. User errors print one line per problem and exit with code 2;
``--traceback`` shows the stack instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hpcbench.plan import Plan
    from hpcbench.study import Study

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


_state: dict[str, object] = {"traceback": False}


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
    """Check a study file and print its plan: the datasets and trials it makes."""
    from hpcbench.study import load_study

    spec = load_study(study, smoke=smoke)  # a bad file fails here, before the plan's imports
    from hpcbench.datasets.importer import ImageImportError
    from hpcbench.plan import GridError, make_plan

    plan = make_plan(spec)
    for name in spec.imports:
        try:
            plan.import_record(name)  # reads and hashes the files
        except ImageImportError as exc:
            raise UserError(f"{study}: imports.{name}: {exc.lines[0]}", *exc.problems) from None
    try:
        lines = _plan_lines(plan)
    except GridError as exc:
        raise UserError(f"{study}: train: {exc}") from None
    typer.echo(f"{study}: valid study {spec.name!r} (seed {spec.seed})")
    for line in lines:
        typer.echo(line)


def _plan_lines(plan: Plan) -> list[str]:
    """The plan in words: one line per dataset, CycleGAN and segmentation grid."""
    spec = plan.study
    lines = []
    for name, dataset in spec.datasets.items():
        lines.append(
            f"  dataset {plan.dataset(name).dirname}: {dataset.size} images "
            f"{dataset.image.shape[0]}x{dataset.image.shape[1]} px, "
            f"{dataset.structure.kind} / {dataset.simulation.method}"
        )
    for name, imported in spec.imports.items():
        record = plan.import_record(name)
        rows, cols = record.shape
        lines.append(
            f"  imported {name}-{record.hash}: {len(record.rows_per_image)} images of "
            f"{imported.path} -> {record.size} rows {rows}x{cols} px at "
            f"{record.spec['stored_pixel_size']:.4g} Å/px, classes {', '.join(imported.classes)}"
        )
    if spec.cyclegan is not None:
        cg = spec.cyclegan
        models = cg.axes.model or [cg.default_model()]
        lines.append(
            f"  cyclegan {cg.source} → {cg.target}: {len(plan.cyclegan_trials)} trial(s), "
            f"{len(models)} model(s) ({', '.join(models)}) × {cg.repeats} repeat(s), "
            f"{cg.epochs} epochs, {cg.patch_size} px patches"
        )
    for name, translation in spec.translate.items():
        trial = plan.translation_trial(name)
        lines.append(
            f"  translated {plan.dataset(name).dirname}: {translation.source} through "
            f"CycleGAN trial {trial.key} ({trial.trial.model_name}, repeat {trial.repeat})"
        )
    if spec.train is not None:
        trials = plan.trials
        conditions = list(dict.fromkeys(t.label for t in trials))
        lines.append(
            f"  train: {len(trials)} trials = {len(conditions)} condition(s) × "
            f"{spec.train.repeats} repeat(s), {spec.train.epochs} epochs"
        )
        lines += [f"    {label}" for label in conditions]
    return lines


AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Ray cluster to use (e.g. auto, HOST:6379); default an embedded local Ray.",
        show_default=False,
    ),
]
DatasetDirArg = Annotated[
    Path, typer.Argument(help="A dataset directory (…/datasets/NAME-HASH).", show_default=False)
]


@app.command("generate")
def generate_command(
    study: StudyArg,
    root: RootOpt = DEFAULT_ROOT,
    address: AddressOpt = None,
    smoke: SmokeOpt = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Generate only this dataset (repeatable).", show_default=False),
    ] = None,
    cpus_per_task: Annotated[
        int, typer.Option("--cpus-per-task", min=1, help="CPUs Ray reserves per shard task.")
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-shard progress lines.")] = False,
) -> None:
    """Generate a study's datasets as Parquet shards; redo only missing or damaged ones."""
    from hpcbench.study import load_study

    spec = load_study(study, smoke=smoke)
    declared = [*spec.datasets, *spec.imports]
    unknown = [name for name in only or [] if name not in declared]
    if unknown:
        raise UserError(
            f"{study}: --only: no dataset {unknown[0]!r} (the study has {', '.join(declared)})"
        )
    from hpcbench.datasets.generate import generate
    from hpcbench.datasets.importer import ImageImportError

    _lock_study(spec, root)
    try:
        results = generate(
            spec,
            root=root,
            address=address,
            only=only,
            progress=not quiet,
            cpus_per_task=cpus_per_task,
        )
    except ImageImportError as exc:
        raise UserError(f"{study}: {exc.headline}", *exc.problems) from None
    for result in results:
        typer.echo(result.summary())


InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception-weights",
        envvar="HPCBENCH_INCEPTION_WEIGHTS",
        help="pytorch-fid Inception weights file (pt_inception-2015-12-05-6726825d.pth) "
        "for CycleGAN FIDs with fid.features: inception; never downloaded.",
        show_default=False,
        exists=True,
        dir_okay=False,
    ),
]


@app.command("train")
def train_command(
    study: StudyArg,
    root: RootOpt = DEFAULT_ROOT,
    address: AddressOpt = None,
    smoke: SmokeOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted sweep (an error if there is none); a plain "
            "re-run continues one too.",
        ),
    ] = False,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent", min=1, help="At most N trials at once.", show_default=False
        ),
    ] = None,
    cpus_per_trial: Annotated[
        float, typer.Option("--cpus-per-trial", min=0.1, help="CPUs per trial (= torch threads).")
    ] = 1.0,
    gpus_per_trial: Annotated[
        float, typer.Option("--gpus-per-trial", min=0.0, help="GPUs per trial (CUDA if > 0).")
    ] = 0.0,
    tracking_uri: TrackingOpt = None,
    status: Annotated[
        bool, typer.Option("--status", help="Also print Tune's trial status tables.")
    ] = False,
    inception_weights: InceptionOpt = None,
) -> None:
    """Train the study's models over its ablation grid as Ray Tune trials, tracked in MLflow.

    A study with a cyclegan section trains its CycleGANs first and writes its
    translated datasets, then trains the segmentation models.
    """
    from hpcbench.study import load_study

    spec = load_study(study, smoke=smoke)
    if spec.train is None and spec.cyclegan is None:
        raise UserError(f"{study}: (top level): the study has no train or cyclegan section")
    from hpcbench.plan import GridError
    from hpcbench.train.sweep import TrainError, summarize, train

    _lock_study(spec, root, create=False)
    try:
        result = train(
            spec,
            root=root,
            address=address,
            resume=resume,
            max_concurrent=max_concurrent,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            tracking_uri=tracking_uri,
            verbose=1 if status else 0,
            inception_weights=str(inception_weights) if inception_weights else None,
            log=typer.echo,
        )
    except (GridError, TrainError) as exc:
        raise UserError(f"{study}: train: {exc}") from None
    for line in summarize(result):
        typer.echo(line)
    if result.errored:
        raise typer.Exit(1)


@app.command("translate")
def translate_command(
    study: StudyArg,
    root: RootOpt = DEFAULT_ROOT,
    address: AddressOpt = None,
    smoke: SmokeOpt = False,
    tracking_uri: TrackingOpt = None,
    cpus_per_task: Annotated[
        float, typer.Option("--cpus-per-task", min=0.1, help="CPUs (torch threads) per shard.")
    ] = 1.0,
) -> None:
    """Write the study's translated datasets with its trained CycleGANs (train does it too)."""
    from hpcbench.study import load_study

    spec = load_study(study, smoke=smoke)
    if not spec.translate:
        raise UserError(f"{study}: (top level): the study has no translate section")
    from hpcbench.datasets.generate import init_ray, shutdown_ray
    from hpcbench.plan import GridError, make_plan
    from hpcbench.train.errors import TrainError
    from hpcbench.train.translate import translate_dataset

    plan = make_plan(spec)
    _lock_study(spec, root, create=False)
    started = init_ray(address)
    try:
        for name in spec.translate:
            path = translate_dataset(
                plan,
                name,
                root=root,
                tracking_uri=_tracking_uri(root, tracking_uri),
                cpus=cpus_per_task,
                log=typer.echo,
            )
            typer.echo(f"translated {name}: {path}")
    except (GridError, TrainError) as exc:
        raise UserError(f"{study}: translate: {exc}") from None
    finally:
        if started:
            shutdown_ray()


TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking URI; default sqlite:///ROOT/mlflow.db.",
        show_default=False,
    ),
]


def _lock_study(spec: Study, root: Path, *, create: bool = True) -> None:
    """Hold the study's lock until the command ends: one driver per study root.

    A second ``generate``/``train``/``translate``/``run`` of the same study under the same
    root exits 2 naming the holder (host, pid, since), having written nothing. Without
    ``create`` a study with no output directory yet is not locked (train and translate
    refuse it for its missing datasets and must create nothing).
    """
    from hpcbench.locking import LockBusyError, hold
    from hpcbench.plan import output_dir

    directory = output_dir(spec, root)
    if not create and not directory.is_dir():
        return
    # Folders this lock creates go again if the command leaves nothing else in them.
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    _locks().callback(_remove_if_only_the_lock, created)
    try:
        _locks().enter_context(hold(directory, what=f"study {spec.name}"))
    except LockBusyError as exc:
        raise UserError(f"{spec.name}: {exc}") from None


def _remove_if_only_the_lock(created: list[Path]) -> None:
    from hpcbench.locking import LOCK_NAME

    for directory in created:  # innermost first
        lock = directory / LOCK_NAME
        if lock.is_file() and [p.name for p in directory.iterdir()] == [LOCK_NAME]:
            lock.unlink()
        try:
            directory.rmdir()  # only if empty
        except OSError:
            return


def _locks() -> ExitStack:
    stack = _state.get("locks")
    if not isinstance(stack, ExitStack):
        raise RuntimeError("study locks are held only inside main()")
    return stack


def _tracking_uri(root: Path, tracking_uri: str | None) -> str:
    from hpcbench.tracking import default_tracking_uri

    return tracking_uri or default_tracking_uri(root)


def _study_name(study: str, smoke: bool = False) -> str:
    """A study's name from its file (validated) or as given."""
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        from hpcbench.study import load_study

        return load_study(path, smoke=smoke).name
    return study


@app.command("report")
def report_command(
    study: Annotated[str, typer.Argument(help="Study name (its MLflow experiment) or study file.")],
    root: RootOpt = DEFAULT_ROOT,
    tracking_uri: TrackingOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default reports/STUDY).", show_default=False),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option("--grid", help="Report this grid hash, not the newest.", show_default=False),
    ] = None,
) -> None:
    """Write a study's statistical ablation report from its MLflow runs alone."""
    name = _study_name(study)
    uri = _tracking_uri(root, tracking_uri)
    _require_store(uri)
    from hpcbench.report.aggregate import ReportError
    from hpcbench.report.build import build_report

    try:
        path = build_report(name, tracking_uri=uri, out=out or Path("reports") / name, grid=grid)
    except ReportError as exc:
        raise UserError(f"{study}: report: {exc}") from None
    typer.echo(f"report: {path}")


def _require_store(uri: str) -> None:
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `hpcbench train` first, "
            "or pass --root / --tracking-uri"
        )


@app.command("run")
def run_command(
    study: StudyArg,
    root: RootOpt = DEFAULT_ROOT,
    address: AddressOpt = None,
    smoke: SmokeOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted sweep (see train).")
    ] = False,
    tracking_uri: TrackingOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report directory (default reports/STUDY[-smoke]).", show_default=False
        ),
    ] = None,
) -> None:
    """Generate, train and report a study: one command from a study file to a report."""
    import time

    from hpcbench.study import load_study

    began = time.perf_counter()
    spec = load_study(study, smoke=smoke)
    if spec.train is None:
        raise UserError(f"{study}: (top level): the study has no train section")
    from hpcbench.datasets.generate import generate
    from hpcbench.plan import GridError, make_plan
    from hpcbench.train.sweep import TrainError, summarize, train

    try:
        make_plan(spec).all_trials()  # a bad grid fails before anything is generated
    except GridError as exc:
        raise UserError(f"{study}: train: {exc}") from None
    uri = _tracking_uri(root, tracking_uri)
    _lock_study(spec, root)
    typer.echo(f"[1/3] generate: {', '.join(spec.datasets)}")
    for generated in generate(spec, root=root, address=address, progress=True):
        typer.echo(f"  {generated.summary()}")
    typer.echo("[2/3] train")
    try:
        result = train(
            spec,
            root=root,
            address=address,
            resume=resume,
            tracking_uri=uri,
            verbose=0,
            log=lambda line: typer.echo(f"  {line}"),
        )
    except (GridError, TrainError) as exc:
        raise UserError(f"{study}: train: {exc}") from None
    for line in summarize(result):
        typer.echo(f"  {line}")
    typer.echo("[3/3] report")
    from hpcbench.report.aggregate import ReportError
    from hpcbench.report.build import build_report

    target = out or Path("reports") / (f"{spec.name}-smoke" if smoke else spec.name)
    try:
        path = build_report(spec.name, tracking_uri=uri, out=target)
    except ReportError as exc:
        raise UserError(f"{study}: report: {exc}") from None
    minutes = (time.perf_counter() - began) / 60
    typer.echo(f"report: {path}")
    typer.echo(f"done in {minutes:.1f} min")
    if result.errored:
        raise typer.Exit(1)


@app.command("ui")
def ui_command(
    root: RootOpt = DEFAULT_ROOT,
    tracking_uri: TrackingOpt = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 5000,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Interface to bind (default 127.0.0.1, this machine only).",
            show_default=False,
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            help="Host headers the UI answers, comma-separated, wildcards allowed (MLflow's "
            "--allowed-hosts; default localhost and private addresses).",
            show_default=False,
        ),
    ] = None,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="MLflow's basic-auth login (user admin, password from "
            "MLFLOW_AUTH_ADMIN_PASSWORD; needs mlflow[auth]). Default: required when --host "
            "is beyond this machine; --no-auth serves there without it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the MLflow UI on the study store (127.0.0.1 unless --host is given).

    Prints a link per study to its runs grouped by condition, with the axis columns.
    Ctrl-C or SIGTERM stops the MLflow server and everything it started (it runs in its
    own process group, which gets the signal); exit code 130 after Ctrl-C, 143 after
    SIGTERM, 2 for a busy port or a missing login, the server's own if it fails.
    """
    import os

    uri = _tracking_uri(root, tracking_uri)
    if uri.startswith(("http://", "https://")):
        typer.echo(f"{uri} is an MLflow server: it serves its own UI there")
        return
    _require_store(uri)
    bind = host or "127.0.0.1"
    local = _is_loopback(bind)
    login = not local if auth is None else auth
    env = dict(os.environ)
    # MLflow's job runner serves GenAI features (judges, trace jobs) hpcbench does not use;
    # it adds a dozen busy processes (huey consumers) to the server.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if login:
        env.update(_ui_login(uri, root, bind))
    elif not local:
        typer.echo(
            f"warning: serving the MLflow UI on {bind} without a login (--no-auth): anyone "
            f"who can reach port {port} can read and delete runs",
            err=True,
        )
    _ui_port_free(bind, port)
    shown = f"[{bind}]" if ":" in bind else bind
    base = f"http://{shown}:{port}"
    typer.echo(f"MLflow UI for {uri} at {base} (Ctrl-C stops it)")
    if login:
        user = env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
        typer.echo(f"  log in as {user} with the password of MLFLOW_AUTH_ADMIN_PASSWORD")
    for study, link in _ui_links(uri):
        typer.echo(f"  {study}: {base}/{link}")
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
        "--host", bind, "--port", str(port),
    ]  # fmt: skip
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if login:
        command += ["--app-name", "basic-auth"]
    code = _serve_group(command, env)
    if code:
        raise typer.Exit(code)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ui_login(uri: str, root: Path, bind: str) -> dict[str, str]:
    """Environment for MLflow's basic auth, checked first (one-line errors).

    Users live in ``mlflow-auth.db`` beside a SQLite store (else under ``root``), named
    by ``mlflow-auth.ini`` there (MLflow's default is a file in the working directory);
    ``MLFLOW_AUTH_CONFIG_PATH``, if set, is used as it is. MLflow creates the admin on
    first start from ``MLFLOW_AUTH_ADMIN_PASSWORD`` (at least 12 characters). The
    login form's CSRF key (``MLFLOW_FLASK_SERVER_SECRET_KEY``) is made per start unless set.
    """
    import importlib.util
    import os
    import secrets

    why = f"a login for the MLflow UI on {bind}"
    if importlib.util.find_spec("flask_wtf") is None:
        raise UserError(
            f"{why} needs MLflow's auth extra: pip install 'mlflow[auth]', or pass --no-auth"
        )
    key = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    env = {"MLFLOW_FLASK_SERVER_SECRET_KEY": key}
    if os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        return env
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else root
    database = folder / "mlflow-auth.db"
    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not database.is_file() and len(password) < 12:
        raise UserError(
            f"{why} needs an admin password of at least 12 characters in "
            "MLFLOW_AUTH_ADMIN_PASSWORD (user admin, or MLFLOW_AUTH_ADMIN_USERNAME), or "
            "pass --no-auth"
        )
    config = folder / "mlflow-auth.ini"
    if not config.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{database.resolve()}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
    return {**env, "MLFLOW_AUTH_CONFIG_PATH": str(config.resolve())}


def _ui_port_free(bind: str, port: int) -> None:
    """Raise a one-line :class:`UserError` if ``bind:port`` cannot be listened on."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {bind}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        # As the server will: a port whose last listener closed (TIME_WAIT) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {bind} is in use (another MLflow UI?): choose another "
                    "with --port"
                ) from None
            raise UserError(f"cannot listen on {bind} port {port}: {exc.strerror}") from None


def _ui_links(uri: str) -> list[tuple[str, str]]:
    """(study, URL fragment) of each study's runs view (:func:`hpcbench.tracking.runs_view`)."""
    from hpcbench.tracking import client_for, runs_view

    client = client_for(uri)
    links = []
    for experiment in client.search_experiments():
        view = runs_view(client, experiment.experiment_id)
        if view is not None:
            links.append(
                (
                    experiment.name,
                    f"#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={view}"
                    "&workflowType=machine_learning",
                )
            )
    return links


def _serve_group(command: list[str], env: dict[str, str]) -> int:
    """Run a server in its own process group until it ends or we get SIGINT/SIGTERM.

    The signal goes to the whole group (the MLflow server, its web workers and job
    runner), a second one or 15 s without stopping kill it; whatever of the group is left
    afterwards is stopped too. Returns 130 after SIGINT, 128 + the signal after SIGTERM,
    else the server's exit code (1 if it stopped by itself with 0: a server ends only
    when told to, or when it could not start).
    """
    import signal
    import subprocess
    import threading

    process = subprocess.Popen(command, env=env, start_new_session=True)
    group = process.pid  # start_new_session: the group's id is the child's pid
    received: list[int] = []
    timer = threading.Timer(15.0, _signal_group, (group, signal.SIGKILL))
    timer.daemon = True

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            _signal_group(group, signum)
            timer.start()
        else:
            _signal_group(group, signal.SIGKILL)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        timer.cancel()
        _stop_group(group)
    if received:
        return 130 if received[0] == signal.SIGINT else 128 + received[0]
    if code == 0:
        typer.echo("error: the MLflow server stopped by itself (see its output above)", err=True)
        return 1
    return code if code > 0 else 128 - code


def _signal_group(group: int, signum: int) -> None:
    import contextlib
    import os

    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` is running (zombies left to init do not count)."""
    import os

    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False


def _stop_group(group: int, grace: float = 10.0) -> None:
    """SIGTERM what is left of a process group, SIGKILL it after ``grace`` seconds."""
    import signal
    import time

    if not _group_alive(group):
        return
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(group):
        if time.monotonic() > deadline:
            _signal_group(group, signal.SIGKILL)
            return
        time.sleep(0.1)


@app.command("predict")
def predict_command(
    model: Annotated[
        str,
        typer.Argument(
            help="A best.pt, a study file (with --condition), or a run id / trial key "
            "(with --study).",
            show_default=False,
        ),
    ],
    images: Annotated[
        list[Path], typer.Argument(help="Image files (tif, png, npy, ...).", show_default=False)
    ],
    pixel_size: Annotated[
        float,
        typer.Option("--pixel-size", help="Pixel size of the images [Å].", show_default=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the CSVs, overlays and scores.")
    ] = Path("predictions"),
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Folder of label CSVs (X, Y [px]) matched by name (or by --pairs).",
            show_default=False,
        ),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs", help="CSV pairing image files with label files.", show_default=False
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Only the images --pairs puts in this split (e.g. test).",
            show_default=False,
        ),
    ] = None,
    match_radius: Annotated[
        list[str] | None,
        typer.Option(
            "--match-radius",
            help="Matching radius in Å, or px with a px suffix (repeatable; the first "
            "is the headline); default the model's detection.match_radius.",
            show_default=False,
        ),
    ] = None,
    condition: Annotated[
        str | None,
        typer.Option(
            "--condition",
            help='The condition of a study MODEL, e.g. "model=unet dose=1e4".',
            show_default=False,
        ),
    ] = None,
    study_file: Annotated[
        Path | None,
        typer.Option(
            "--study", help="Study file whose store holds a run id MODEL.", show_default=False
        ),
    ] = None,
    root: RootOpt = DEFAULT_ROOT,
    tracking_uri: TrackingOpt = None,
    smoke: SmokeOpt = False,
    model_pixel_size: Annotated[
        float | None,
        typer.Option(
            "--model-pixel-size",
            help="Training pixel size [Å] of a best.pt too old to record it.",
            show_default=False,
        ),
    ] = None,
    no_figures: Annotated[
        bool, typer.Option("--no-figures", help="Skip the overlay PNGs.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="Torch device.")] = "cpu",
) -> None:
    """Find atoms in experimental images with a trained model; score them given labels.

    Each image is resampled to the model's training pixel size, cut into overlapping
    tiles of its training crop, normalised as training did, and searched with the
    trainer's atom finder. Writes OUT/<image>.csv (x, y [px], x_A, y_A [Å], class,
    score) and OUT/<image>.png; with --labels also OUT/scores.csv and OUT/summary.json.
    """
    from hpcbench.apply import AtomFinder, label_files, parse_radius, predict_images
    from hpcbench.apply.resolve import resolve_model

    if not (pixel_size > 0):
        raise UserError(f"--pixel-size must be positive, got {pixel_size}")
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise UserError(f"predict: no image file {missing[0]}")
    try:
        radii = [parse_radius(text) for text in match_radius or []]
        resolved = resolve_model(
            model,
            study=str(study_file) if study_file else None,
            condition=condition,
            root=root,
            tracking_uri=tracking_uri,
            smoke=smoke,
        )
        finder = AtomFinder.load(
            resolved.path, device=device, pixel_size=model_pixel_size, source=resolved.description
        )
        chosen = list(images)
        if split is not None:
            if pairs is None:
                raise ValueError("--split needs --pairs")
            from hpcbench.datasets.importer import read_pairs

            table = read_pairs(pairs)
            chosen = [p for p in chosen if table.get(p.name, ("", ""))[1] == split]
            if not chosen:
                raise ValueError(f"no image is in split {split!r} of {pairs}")
        label_map = label_files(chosen, labels, pairs=pairs) if labels is not None else None
    except ValueError as exc:
        raise UserError(f"predict: {exc}") from None
    typer.echo(
        f"{resolved.description}: {', '.join(finder.classes)} at {finder.pixel_size:.4g} Å/px, "
        f"tiles {finder.tile[0]}x{finder.tile[1]} px"
    )
    try:
        result = predict_images(
            finder,
            chosen,
            pixel_size=pixel_size,
            out_dir=out,
            labels=label_map,
            radii=radii,
            figures=not no_figures,
        )
    except ValueError as exc:
        raise UserError(f"predict: {exc}") from None
    for line in result.summary_lines():
        typer.echo(line)


@app.command("evaluate")
def evaluate_command(
    study: StudyArg,
    test_set: Annotated[
        str,
        typer.Option(
            "--test-set",
            help="Dataset or import of the study to score every complete run on.",
            show_default=False,
        ),
    ],
    root: RootOpt = DEFAULT_ROOT,
    tracking_uri: TrackingOpt = None,
    smoke: SmokeOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-score runs that already have the set.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="Torch device.")] = "cpu",
) -> None:
    """Score a trained study's models on another dataset without retraining.

    Each complete run's best.pt is scored as the trainer scores its test sets; the
    scores go into that run as test/<set>/... and the report picks them up.
    """
    from hpcbench.apply.evaluate import evaluate_study
    from hpcbench.study import load_study

    spec = load_study(study, smoke=smoke)
    _lock_study(spec, root, create=False)
    try:
        result = evaluate_study(
            spec,
            test_set,
            root=root,
            tracking_uri=tracking_uri,
            device=device,
            force=force,
            log=typer.echo,
        )
    except ValueError as exc:
        raise UserError(f"{study}: evaluate: {exc}") from None
    typer.echo(result.summary())


@app.command("compare-sets")
def compare_sets_command(
    first: DatasetDirArg,
    second: DatasetDirArg,
    column: Annotated[str, typer.Option("--column", help="Tensor column to compare.")] = "image",
    limit: Annotated[
        int, typer.Option("--limit", min=2, help="At most N images per set (a seeded sample).")
    ] = 2000,
) -> None:
    """Distances between two datasets' images: FID (spectral-v1), histogram KL, spectra.

    Also, when both record their pixel size, label-free frame statistics (peak contrast
    and SNR, slow background, counts-equivalent; metrics.frame_statistics) per set, on
    tiles of the smaller frame shape, and the share of B's frames inside A's range:
    how to check that a simulation's corruption ranges cover real frames.
    """
    import numpy as np

    from hpcbench.datasets.read import read_dataset
    from hpcbench.datasets.schema import images_to_numpy
    from hpcbench.metrics import fid, histogram_kl, power_spectrum_distance

    stacks = []
    pixel_sizes: list[float | None] = []
    for directory in (first, second):
        table = read_dataset(directory)
        images = np.asarray(images_to_numpy(table, column), dtype=np.float64)
        sizes = table.column("pixel_size").to_numpy() if "pixel_size" in table.column_names else []
        pixel_sizes.append(float(np.median(sizes)) if len(sizes) else None)
        if len(images) > limit:
            pick = np.random.default_rng(0).choice(len(images), limit, replace=False)
            images = images[np.sort(pick)]
        if len(images) < 2:
            raise UserError(f"{directory}: needs at least 2 images, has {len(images)}")
        stacks.append(images)
    a, b = stacks
    result = fid(a, b)
    typer.echo(f"A = {first} ({len(a)} images), B = {second} ({len(b)} images)")
    typer.echo(f"  Frechet distance ({result.extractor} features)   {result.value:.6g}")
    typer.echo(f"  KL(A || B) of intensity histograms           {histogram_kl(a, b):.6g} nats")
    typer.echo(
        f"  power-spectrum distance (RMS log10)           {power_spectrum_distance(a, b):.6g}"
    )
    if None not in pixel_sizes:
        for line in _frame_statistics_lines(a, b, pixel_sizes):  # type: ignore[arg-type]
            typer.echo(line)


def _tiles(images: Any, shape: tuple[int, int]) -> Any:
    """Non-overlapping ``shape`` tiles of every image (the remainder is dropped)."""
    import numpy as np

    rows, cols = shape
    _, height, width = images.shape
    tiles = [
        images[:, r : r + rows, c : c + cols]
        for r in range(0, height - rows + 1, rows)
        for c in range(0, width - cols + 1, cols)
    ]
    return np.concatenate(tiles) if tiles else images[:0, :rows, :cols]


def _frame_statistics_lines(a: Any, b: Any, pixel_sizes: list[float]) -> list[str]:
    """Percentiles of the frame statistics of A and B and B's share inside A's range."""
    import numpy as np

    from hpcbench.metrics import FRAME_STATISTICS, frame_statistics

    shape = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
    stats = [
        frame_statistics(_tiles(x, shape), pixel_size=p)
        for x, p in zip((a, b), pixel_sizes, strict=True)
    ]
    lines = [
        f"  frame statistics on {shape[0]}x{shape[1]} px tiles (p10 / p50 / p90; "
        "B inside A's p1-p99):"
    ]
    for name in FRAME_STATISTICS:
        va, vb = stats[0][name], stats[1][name]
        lo, hi = np.percentile(va, [1, 99])
        inside = float(np.mean((vb >= lo) & (vb <= hi)))
        pa = " / ".join(f"{v:.3g}" for v in np.percentile(va, [10, 50, 90]))
        pb = " / ".join(f"{v:.3g}" for v in np.percentile(vb, [10, 50, 90]))
        lines.append(f"    {name:14s} A {pa:22s} B {pb:22s} {inside:4.0%}")
    return lines


@app.command("verify")
def verify_command(dataset_dir: DatasetDirArg) -> None:
    """Check every shard against the manifest; exit 1 with a line per problem."""
    from hpcbench.datasets.manifest import verify

    report = verify(dataset_dir)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(f"{dataset_dir}: intact, {report.shards_ok} shards, {report.rows_ok} rows")


@app.command("show")
def show_command(
    dataset_dir: DatasetDirArg,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 16,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="PNG to write (default: NAME-HASH.png here).", show_default=False
        ),
    ] = None,
) -> None:
    """Save a PNG grid of a dataset's first images with mask overlay and labelled sites."""
    from hpcbench.datasets.show import show_dataset

    path = show_dataset(dataset_dir, n=n, out=out or Path(f"{dataset_dir.resolve().name}.png"))
    typer.echo(f"wrote {path}")


LATTICE_HELP = "the hexagonal lattice imaged: graphene, hBN, MoS2, MoSe2, WS2, WSe2 or a=<Å>."
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="Path of the image in each HDF5 file (needed when a file holds several).",
        show_default=False,
    ),
]


@app.command("import-images")
def import_images_command(
    source_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder of TIFF/PNG/NPY/HDF5 (DM3/DM4/EMD) images.", show_default=False
        ),
    ],
    pixel_size: Annotated[
        str,
        typer.Option(
            "--pixel-size",
            help="Pixel size of the images [Å], a CSV of one per image (columns image, "
            "pixel_size), or auto (measured from --lattice).",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Dataset name.", show_default=False)],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="Folder of label CSVs (X, Y [px]) or masks.", show_default=False
        ),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs", help="CSV pairing images with label files (and a split).", show_default=False
        ),
    ] = None,
    target_pixel_size: Annotated[
        float | None,
        typer.Option(
            "--target-pixel-size", help="Resample to this pixel size [Å].", show_default=False
        ),
    ] = None,
    patch: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--patch", help="Cut into non-overlapping H W patches [px].", show_default=False
        ),
    ] = None,
    label_radius: Annotated[
        float, typer.Option("--label-radius", help="Mask disk radius around each site [Å].")
    ] = 0.6,
    dataset: DatasetOpt = None,
    lattice: Annotated[
        str | None,
        typer.Option(
            "--lattice", help="With --pixel-size auto: " + LATTICE_HELP, show_default=False
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="Only the images --pairs puts in this split.", show_default=False
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing dataset directory.")
    ] = False,
    root: RootOpt = DEFAULT_ROOT,
) -> None:
    """Import experimental images (and labels) as a dataset in ROOT/imported/NAME-HASH."""
    from hpcbench.datasets.importer import ImageImportError, import_images

    size = None if patch is None or None in patch else (int(patch[0]), int(patch[1]))
    try:
        result = import_images(
            source_dir,
            root / "imported",
            name=name,
            pixel_size=pixel_size,
            target_pixel_size=target_pixel_size,
            labels_dir=labels,
            label_radius=label_radius,
            patch=size,
            pairs_csv=pairs,
            dataset=dataset,
            lattice=lattice,
            split=split,
            overwrite=overwrite,
        )
    except ImageImportError as exc:
        raise UserError(*exc.lines) from None
    typer.echo(result.summary())


@app.command("calibrate")
def calibrate_command(
    images: Annotated[
        list[Path], typer.Argument(help="Images of a hexagonal lattice.", show_default=False)
    ],
    lattice: Annotated[str, typer.Option("--lattice", help=LATTICE_HELP, show_default=False)],
    dataset: DatasetOpt = None,
) -> None:
    """Measure each image's pixel size from the first-order ring of a known lattice."""
    from hpcbench.datasets.importer import read_image
    from hpcbench.metrics.lattice import calibrate_pixel_size, parse_lattice

    try:
        chosen = parse_lattice(lattice)
    except ValueError as exc:
        raise UserError(f"calibrate: {exc}") from None
    typer.echo(
        f"{chosen.name}: a = {chosen.a:g} Å, first-order {{10-10}} spacing "
        f"{chosen.first_order:.4g} Å"
    )
    failed = []
    for path in images:
        hdf5 = path.suffix.lower() in (".h5", ".hdf5")
        try:
            found = calibrate_pixel_size(read_image(path, dataset if hdf5 else None), chosen)
        except ValueError as exc:
            failed.append(f"{path}: {exc}")
            continue
        typer.echo(
            f"{path}: spacing {found.spacing:.4f} px -> pixel size {found.pixel_size:.5g} Å/px "
            f"({found.reflections} reflections, {found.contrast:.3g}x over background)"
        )
    if failed:
        raise UserError(*failed)


def _report(exc: BaseException) -> int:
    from hpcbench.study import StudyError

    if _state["traceback"]:
        raise exc
    if isinstance(exc, StudyError | UserError):
        for line in exc.lines:
            typer.echo(line, err=True)
        return 2
    from hpcbench.train.errors import Interrupted  # lazy: start-up time

    if isinstance(exc, Interrupted):
        typer.echo(str(exc), err=True)
        return 130
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | ConnectionError):
        typer.echo(f"error: {exc}", err=True)
        return 2
    raise exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (tests call this directly)."""
    _state["traceback"] = False
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # With standalone_mode=False, click returns a typer.Exit's code instead of raising.
        with ExitStack() as locks:  # study locks taken by the command, released here
            _state["locks"] = locks
            result = app(args=args, prog_name="hpcbench", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        if _state["traceback"]:
            raise
        typer.echo("interrupted; what is complete is kept: run the same command to go on", err=True)
        return 130
    except Exception as exc:
        # typer vendors click (typer._click); its usage errors carry show() and exit_code.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return 2
        return _report(exc)
    return result if isinstance(result, int) else 0
