"""``orq broker``: the configured broker, or the embedded NATS server of this directory."""

from __future__ import annotations

import typer

from orquestrador.cli import console
from orquestrador.cli.options import BrokerOpt

app = typer.Typer(
    name="broker",
    help="The configured broker, or the embedded NATS server of this directory.",
    no_args_is_help=True,
)


@app.command("status")
def broker_status(broker: BrokerOpt = None) -> None:
    """Show the configured broker and whether it answers (a password or token shows as ***), or
    whether this directory's embedded NATS server runs, and where."""
    import asyncio

    from orquestrador.brokers import connect, embedded
    from orquestrador.settings import broker_url, home, redact_url

    configured = broker_url(broker)
    if configured is not None:
        console.out().print(f"configured  {redact_url(configured)}", markup=False, highlight=False)

        async def ping() -> None:
            await (await connect(configured)).close()

        asyncio.run(ping())  # an unreachable broker ends as one redacted error line
        console.out().print("reachable")
        return
    server = embedded.status()
    if server is None:
        console.out().print(f"no embedded broker running for {home()}")
        raise typer.Exit(1)
    console.out().print(f"running  {server.url}  pid {server.pid}  store {server.store_dir}")


@app.command("stop")
def broker_stop() -> None:
    """Stop this directory's embedded NATS server (its data stays on disk)."""
    from orquestrador.brokers import embedded

    console.out().print("stopped" if embedded.stop() else "no embedded broker was running")
