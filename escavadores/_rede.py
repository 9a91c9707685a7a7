"""Which addresses the escavadores may connect to, checked on the address actually dialled.

A payload names any URL it likes, so a worker inside a cloud or a private network would fetch
its metadata service or internal admin pages for whoever can publish a job. ``ORQ_FETCH_DENY``
lists the networks it refuses. The check sits in the connection layer (an httpcore network
backend): the host is resolved here, every address is checked, and the socket is opened to a
checked address itself, so neither a redirect nor a DNS answer that changes between a check and
the connect (rebinding) reaches a refused network. Proxies from the environment are not used:
through a proxy the worker could not see the address it finally reaches.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from dataclasses import dataclass

import httpcore
import httpx

from orquestrador import PermanentFailure
from orquestrador.settings import ENV_FETCH_DENY, deny_networks, fetch_deny

Rede = ipaddress.IPv4Network | ipaddress.IPv6Network
Endereco = ipaddress.IPv4Address | ipaddress.IPv6Address


class EnderecoRecusado(PermanentFailure):
    """The URL's host is (or resolves to) an address in a network the worker refuses."""


@dataclass(frozen=True)
class Politica:
    """The refused networks, and the setting they came from (for messages)."""

    texto: str
    redes: tuple[Rede, ...]

    def recusa(self, endereco: Endereco) -> Rede | None:
        """The refused network ``endereco`` is in, or None; IPv4-mapped IPv6 counts as IPv4."""
        if isinstance(endereco, ipaddress.IPv6Address) and endereco.ipv4_mapped is not None:
            endereco = endereco.ipv4_mapped
        return next((rede for rede in self.redes if endereco in rede), None)


def ler_politica(texto: str) -> Politica:
    """A comma-separated list of group names and CIDRs (``none`` refuses nothing)."""
    return Politica(texto, deny_networks(texto))


def politica() -> Politica:
    """The policy now: ``ORQ_FETCH_DENY`` (read on every connection), default ``link-local``."""
    return ler_politica(fetch_deny())


async def resolver(host: str, port: int, timeout: float | None) -> list[Endereco]:
    """The addresses ``host`` stands for, in the resolver's order; a literal is itself."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout}s") from None
    enderecos: dict[Endereco, None] = {}
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            enderecos[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(enderecos)


class BackendVigiado(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, dialling only addresses the policy allows."""

    def __init__(self) -> None:
        self._rede = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        regra = politica()
        enderecos = await resolver(host, port, timeout)
        permitidos = [e for e in enderecos if regra.recusa(e) is None]
        if not permitidos:
            recusado = enderecos[0]
            nome = f"{host} ({recusado})" if str(recusado) != host else host
            raise EnderecoRecusado(
                f"{nome} is in {regra.recusa(recusado)}, a network this worker refuses to fetch "
                f"({ENV_FETCH_DENY}={regra.texto!r}); the operator can change {ENV_FETCH_DENY} "
                "(or orq worker --fetch-deny)"
            )
        erro: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for endereco in permitidos:  # TLS still names the host: httpcore sends the URL's host as SNI
            try:
                return await self._rede.connect_tcp(
                    str(endereco), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                erro = exc
        assert erro is not None
        raise erro

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the escavadores never connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._rede.sleep(seconds)


def transporte(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport over :class:`BackendVigiado` (httpx takes no backend argument itself)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=BackendVigiado(),
    )
    return transport
