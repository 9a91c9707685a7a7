"""``orq worker``: serve plugins' queues, one process or a supervised pool of them.

``orq worker escavador http rss`` serves two queues from one process and one broker connection
(one :class:`~orquestrador.worker.Worker` over both plugins); ``orq worker --all`` serves every
registered escavador and executor; ``--processes N`` starts N such processes under a
supervisor. Free of rich, pandas and the store, so that a worker process starts small.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from orquestrador import settings
from orquestrador.cli.options import BrokerOpt, LogFormatOpt, LogLevelOpt, ModuleOpt, import_modules
from orquestrador.errors import OrquestradorError, PluginError
from orquestrador.plugins import Plugin, registry
from orquestrador.vocabulary import KINDS, Kind

log = logging.getLogger("orquestrador.worker")

app = typer.Typer(
    name="worker",
    help="Run workers: escavador/executor queues (several per process, or --all) and pipelines.",
    invoke_without_command=True,
)


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


# The options every serving command takes (escavador, executor, --all), declared once.
_SERVE_OPTIONS = [
    _option("broker", BrokerOpt),
    _option("concurrency", Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, help="Jobs at once per queue (default: the plugin's, else 8).")]),
    _option("module", ModuleOpt),
    _option("max_tentativas", Annotated[int | None, typer.Option(
        min=1, help="Attempts before the DLQ (default: the plugin's, else 5).")]),
    _option("timeout", Annotated[float | None, typer.Option(
        min=0.001, help="Seconds a job may run (default: the plugin's, else none).")]),
    _option("rate_limit", Annotated[float | None, typer.Option(
        min=0.001, help="Jobs per second (per domain for escavadores; default: the plugin's).")]),
    _option("visibility_timeout", Annotated[float, typer.Option(
        min=0.5, help="Seconds before a dead worker's job is redelivered.")], 30.0),
    _option("processes", Annotated[int, typer.Option(
        "--processes", "-p", min=1, help="Worker processes under one supervisor (use every core).")], 1),
    _option("metrics_port", Annotated[int | None, typer.Option(
        "--metrics-port", min=1, max=65535, envvar="ORQ_METRICS_PORT",
        help="Serve Prometheus metrics on this port ($ORQ_METRICS_PORT).")]),
    _option("log_level", LogLevelOpt),
    _option("log_format", LogFormatOpt),
]  # fmt: skip

# What a payload may ask of the built-in plugins: each option sets its variable, which the plugins
# read on every job (and --processes children inherit).
_PLUGIN_SETTINGS = [
    ("fetch_deny", settings.ENV_FETCH_DENY, str, "Networks the escavadores never fetch: CIDRs and "
     f"link-local, loopback, private, local, none (default {settings.DEFAULT_FETCH_DENY})"),
    ("max_fetch_bytes", settings.ENV_FETCH_MAX_BYTES, int, "Most bytes a payload may ask an escavador "
     f"to fetch (default {settings.DEFAULT_FETCH_MAX_BYTES})"),
    ("max_fetch_timeout", settings.ENV_FETCH_MAX_TIMEOUT, float, "Longest fetch a payload may ask for, "
     f"in seconds (default {settings.DEFAULT_FETCH_MAX_TIMEOUT:g})"),
    ("max_output_bytes", settings.ENV_COMANDO_MAX_BYTES, int, "Most output a comando payload may keep "
     f"per stream (default {settings.DEFAULT_COMANDO_MAX_BYTES})"),
    ("max_command_timeout", settings.ENV_COMANDO_MAX_TIMEOUT, float, "Longest run a comando payload may "
     f"ask for, in seconds (default {settings.DEFAULT_COMANDO_MAX_TIMEOUT:g})"),
]  # fmt: skip
_SERVE_OPTIONS += [
    _option(name, Annotated[kind | None, typer.Option(envvar=env, help=f"{text}.")])
    for name, env, kind, text in _PLUGIN_SETTINGS
]


def _plugin_settings(opts: dict[str, Any]) -> None:
    """Hand the options to the plugins through their variables, and check every such setting now:
    a typo stops the worker at start instead of failing each of its jobs."""
    for name, env, _, _ in _PLUGIN_SETTINGS:
        if opts.get(name) is not None:
            os.environ[env] = str(opts[name])
    settings.deny_networks(settings.fetch_deny())
    for env, default in settings.CEILINGS.items():
        settings.ceiling(env, default)


def _with_options(fn: Callable[..., None], leading: list[inspect.Parameter]) -> Callable[..., None]:
    """Give ``fn(**kwargs)`` a signature typer reads: ``leading`` parameters, then the shared ones."""
    fn.__signature__ = inspect.Signature([*leading, *_SERVE_OPTIONS])  # type: ignore[attr-defined]
    return fn


def _select(kind: Kind | None, names: list[str]) -> list[Plugin]:
    if kind is not None:
        return [registry.get(kind, name) for name in dict.fromkeys(names)]
    plugins = registry.all()
    if not plugins:
        raise PluginError("--all found no registered escavador or executor: pass --module M to import yours")
    return plugins


def _configure(plugin: Plugin, overrides: dict[str, Any]) -> Plugin:
    # Options given on the command line win over the plugin's decorator, which wins over defaults.
    plugin = dataclasses.replace(plugin, **{k: v for k, v in overrides.items() if v is not None})
    if plugin.rate_limit and plugin.rate_key is None and plugin.kind == "escavador":
        from orquestrador.plugins import domain_of

        plugin = dataclasses.replace(plugin, rate_key=domain_of)
    return plugin


@contextlib.contextmanager
def _logged_errors(fmt: str) -> Iterator[None]:
    """With JSON logs, a fatal error (broker down, unknown plugin) is a JSON line too, for shippers."""
    try:
        yield
    except OrquestradorError as exc:
        if fmt != "json":
            raise
        log.error("%s", exc)
        raise typer.Exit(2) from None


def _serve(kind: Kind | None, names: list[str], opts: dict[str, Any]) -> None:
    from orquestrador import logs

    with _logged_errors(logs.setup(opts["log_level"], opts["log_format"])):
        _serve_logged(kind, names, opts)


def _serve_logged(kind: Kind | None, names: list[str], opts: dict[str, Any]) -> None:
    from orquestrador.settings import redact_url
    from orquestrador.worker import supervisor

    if "httpx" not in sys.modules:
        # httpx imports its own command-line client (click, rich, pygments: ~6 MiB) whenever they
        # are installed, and falls back to a stub when that import fails; a worker never runs it.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    _plugin_settings(opts)
    import_modules(opts["module"] or [])
    overrides = {k: opts[k] for k in ("concurrency", "max_tentativas", "timeout", "rate_limit")}
    plugins = [_configure(p, overrides) for p in _select(kind, names)]
    if opts["processes"] > 1 and not supervisor.is_child():
        boss = supervisor.Supervisor(
            supervisor.child_command(), opts["processes"], metrics_port=opts["metrics_port"]
        )
        raise typer.Exit(boss.run())

    from orquestrador.brokers import connect, resolve_url
    from orquestrador.worker import Worker, WorkerOptions, metrics

    url = resolve_url(opts["broker"])
    recorder = metrics.for_worker(opts["metrics_port"])
    options = WorkerOptions(visibility_timeout=opts["visibility_timeout"])

    async def serve() -> None:
        connection = await connect(url)
        try:
            await Worker(connection, plugins, options, metrics=recorder).run_until_signal()
        finally:
            await connection.close()

    log.info("connecting to %s", redact_url(url))
    asyncio.run(serve())


def _kind_command(kind: Kind) -> Callable[..., None]:
    def command(**opts: Any) -> None:
        _serve(kind, opts.pop("names"), opts)

    command.__doc__ = (
        f"Serve the queues of these {kind}s ({kind}_NAME) until SIGINT/SIGTERM (then drain and exit)."
    )
    names = inspect.Parameter(
        "names", inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[list[str], typer.Argument(metavar="NAME", help="Plugin names, e.g. http rss.")],
    )  # fmt: skip
    return _with_options(command, [names])


for _kind in KINDS:
    app.command(_kind)(_kind_command(_kind))


def _all_callback(ctx: typer.Context, **opts: Any) -> None:
    """Run workers. `orq worker --all` serves every registered escavador and executor."""
    every = opts.pop("all")
    if ctx.invoked_subcommand is not None:
        if every:
            raise OrquestradorError("--all serves every plugin: give it without a subcommand")
        return
    if not every:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _serve(None, [], opts)


_every = _option("all", Annotated[bool, typer.Option(
    "--all", help="Serve every registered escavador and executor (with --module's) from one worker.")],
    False)  # fmt: skip
_context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
app.callback()(_with_options(_all_callback, [_context, _every]))


@app.command("pipeline")
def worker_pipeline(
    name: Annotated[str, typer.Argument(help="The pipeline's name.")],
    module: ModuleOpt = None,
    broker: BrokerOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run a pipeline's rules (pipeline_NAME) so they outlive the notebook that declared them."""
    from orquestrador import logs
    from orquestrador.brokers import connect, resolve_url
    from orquestrador.pipeline import Pipeline, PipelineRunner, get_pipeline

    fmt = logs.setup(log_level, log_format)

    async def serve(pipeline: Pipeline, url: str) -> None:
        connection = await connect(url)
        runner = PipelineRunner(connection, pipeline)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
            await connection.close()

    with _logged_errors(fmt):
        import_modules(module or [])
        asyncio.run(serve(get_pipeline(name), resolve_url(broker)))


@app.command("agenda")
def worker_agenda(
    broker: BrokerOpt = None,
    ttl: Annotated[float, typer.Option(
        help="Seconds the leader's lease lasts unrenewed: the longest gap when a scheduler dies.")] = 5.0,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Fire the broker's schedules until SIGINT/SIGTERM. Run two or more for availability: one
    leads (a lease on the broker), the others take over if it stops."""  # fmt: skip
    from orquestrador import logs
    from orquestrador.agenda import Scheduler
    from orquestrador.brokers import connect, resolve_url

    fmt = logs.setup(log_level, log_format)

    async def serve(url: str) -> None:
        connection = await connect(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await Scheduler(connection, ttl=ttl).run(stop)
        finally:
            await connection.close()

    with _logged_errors(fmt):
        asyncio.run(serve(resolve_url(broker)))
