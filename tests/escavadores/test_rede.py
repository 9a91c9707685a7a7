"""The networks the escavadores refuse (ORQ_FETCH_DENY), checked on the address actually dialled.

Traffic goes to 127.0.0.1 only: the default refusal of link-local and metadata addresses is
checked on the policy itself, the refusal in the connection path by refusing loopback.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import quote

import pytest

from escavadores._rede import EnderecoRecusado, ler_politica, politica, resolver
from orquestrador import Contexto, PermanentFailure
from orquestrador.errors import ConfigError
from orquestrador.settings import ENV_FETCH_DENY
from tests.escavadores.servidor import PLUGINS, Site

NOMES = list(PLUGINS)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.fixture(autouse=True)
def _limpo(origem: Site, outra_origem: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    origem.pedidos.clear()
    outra_origem.pedidos.clear()
    monkeypatch.setenv(ENV_FETCH_DENY, "")  # so that teardown undoes what the /vira route sets too
    monkeypatch.delenv(ENV_FETCH_DENY)


def ctx(nome: str) -> Contexto:
    return Contexto("c", "m", 1, nome, logging.LoggerAdapter(logging.getLogger("t"), {}))


@pytest.mark.parametrize(
    "endereco", ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"]
)
def test_by_default_link_local_and_cloud_metadata_addresses_are_refused(endereco: str):
    assert politica().recusa(ip(endereco)) is not None


@pytest.mark.parametrize(
    "endereco", ["127.0.0.1", "10.0.0.1", "192.168.1.1", "93.184.216.34", "2606:4700::1"]
)
def test_by_default_everything_else_is_allowed(endereco: str):
    assert politica().recusa(ip(endereco)) is None


@pytest.mark.parametrize(
    "endereco",
    ["127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1", "192.168.1.1",
     "100.64.0.1", "fc00::1", "fd12:3456::1", "169.254.169.254", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_local_refuses_loopback_private_and_link_local_in_one_word(
    endereco: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_FETCH_DENY, "local")
    assert politica().recusa(ip(endereco)) is not None
    assert politica().recusa(ip("93.184.216.34")) is None


def test_networks_and_groups_combine_and_none_refuses_nothing():
    regra = ler_politica("link-local, 203.0.113.0/24, 2001:db8::/32")
    assert regra.recusa(ip("203.0.113.9")) == ipaddress.ip_network("203.0.113.0/24")
    assert regra.recusa(ip("2001:db8::5")) is not None
    assert regra.recusa(ip("169.254.169.254")) is not None
    assert regra.recusa(ip("203.0.114.1")) is None
    assert ler_politica("none").redes == ()


@pytest.mark.parametrize("valor", ["privado", "10.0.0.0/33", "link-local,,x"])
def test_a_bad_setting_is_a_config_error_naming_it(valor: str):
    with pytest.raises(ConfigError, match=ENV_FETCH_DENY):
        ler_politica(valor)


async def test_names_are_resolved_to_the_addresses_the_policy_sees():
    assert ip("127.0.0.1") in await resolver("localhost", 80, 5)
    assert await resolver("127.0.0.1", 80, 5) == [ip("127.0.0.1")]


@pytest.mark.parametrize("nome", NOMES)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refused_network_fails_permanently_before_any_request(
    nome: str, host: str, origem: Site, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_FETCH_DENY, "loopback")
    url = origem.url.replace("127.0.0.1", host) + f"/doc/{nome}"
    with pytest.raises(EnderecoRecusado, match=rf"127\.0\.0\.0/8.*{ENV_FETCH_DENY}='loopback'") as info:
        await PLUGINS[nome]({"url": url}, ctx(nome))
    assert isinstance(info.value, PermanentFailure)  # dead-lettered at once, with that reason
    assert origem.pedidos == []


@pytest.mark.parametrize("nome", NOMES)
async def test_every_redirect_hop_is_checked(nome: str, origem: Site, outra_origem: Site):
    # The first hop is allowed; answering it, the server tightens the policy (as an operator
    # could), and the hop it redirects to must meet the new one.
    destino = quote(f"{outra_origem.url}/doc/{nome}")
    with pytest.raises(EnderecoRecusado):
        await PLUGINS[nome]({"url": f"{origem.url}/vira?nega=loopback&para={destino}"}, ctx(nome))
    assert len(origem.pedidos) == 1
    assert outra_origem.pedidos == []
