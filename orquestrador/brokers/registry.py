"""Which adapter serves which URL scheme: the entry-point group ``orquestrador.brokers``.

Every adapter, the built-in ones included, is registered the same way, as ``scheme = module:Class``
in its package's metadata, so a third-party package adds a broker by declaring, in its own
``pyproject.toml``::

    [project.entry-points."orquestrador.brokers"]
    sqs = "orquestrador_sqs:SqsBroker"

The class must be a :class:`~orquestrador.brokers.base.Broker` with a ``capabilities``
declaration and take the URL as its only positional argument.

A source checkout whose installed metadata predates this group (an editable install made before
it existed) still finds the built-ins: they are then read from the checkout's ``pyproject.toml``,
the same declaration, never a second table.
"""

from __future__ import annotations

import functools
import importlib
import logging
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from orquestrador.brokers.base import Broker, Capabilities
from orquestrador.errors import ConfigError

GROUP = "orquestrador.brokers"
INSTALL_HINT = "pip install orquestrador"
# Drivers of built-in adapters that come with an optional extra, not with the package itself.
EXTRAS = {"aiokafka": "kafka"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """One ``scheme = module:Class`` line of the group, not imported yet."""

    scheme: str
    target: str  # "module:Class"
    distribution: str  # who declared it, for error messages

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


def registrations() -> dict[str, Registration]:
    """Every registered scheme (read once per process; see :func:`refresh`)."""
    return dict(_registrations())


def known_schemes() -> list[str]:
    return sorted(_registrations())


def refresh() -> None:
    """Read the entry points again (after a package was installed into the running process)."""
    _registrations.cache_clear()
    adapter_for.cache_clear()


@functools.cache
def _registrations() -> dict[str, Registration]:
    found: dict[str, Registration] = {}
    for entry in metadata.entry_points(group=GROUP):
        dist = entry.dist.name if entry.dist is not None else "?"
        found.setdefault(entry.name, Registration(entry.name, entry.value, dist))
    if not any(r.distribution == "orquestrador" for r in found.values()):
        for scheme, target in _checkout_declaration().items():
            found.setdefault(scheme, Registration(scheme, target, "orquestrador"))
    return found


def _checkout_declaration() -> dict[str, str]:
    """The group as this source checkout's pyproject.toml declares it (see the module docstring)."""
    path = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    if project.get("name") != "orquestrador":
        return {}
    log.debug("the installed metadata has no %s entry points; using %s", GROUP, path)
    declared = project.get("entry-points", {}).get(GROUP, {})
    return {str(k): str(v) for k, v in declared.items()}


@functools.cache
def adapter_for(scheme: str) -> type[Broker]:
    """The adapter class registered for ``scheme``; ConfigError saying what to do if there is none."""
    registration = _registrations().get(scheme)
    if registration is None:
        known = ", ".join(f"{s}://" for s in known_schemes())
        raise ConfigError(
            f"no broker adapter for {scheme}:// URLs: use one of {known}, or install the package "
            f"that provides it (it registers itself under the entry-point group {GROUP!r})"
        )
    module_name, _, class_name = registration.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"the {scheme}:// broker is registered by {registration.distribution} as "
                f"{registration.target}, which is not importable: reinstall {registration.distribution}"
            ) from None
        extra = EXTRAS.get((exc.name or "").partition(".")[0])
        hint = f'pip install "orquestrador[{extra}]"' if extra else INSTALL_HINT
        raise ConfigError(f"the {scheme}:// broker needs the '{exc.name}' package: {hint}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Broker)):
        raise ConfigError(f"{registration.target} (for {scheme}://) is not a broker adapter class")
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        raise ConfigError(f"{registration.target} (for {scheme}://) declares no capabilities")
    return cls


__all__ = ["GROUP", "Registration", "adapter_for", "known_schemes", "refresh", "registrations"]
