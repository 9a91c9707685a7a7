"""TLS for broker connections: one SSL context built the same way for NATS, Redis and RabbitMQ,
and one way of telling the user which setting fixes a refused handshake.

Paths come from :func:`orquestrador.settings.split_tls` (``?tls_ca=`` or ``ORQ_TLS_CA`` and
friends). Errors name the setting and the path, never file contents.
"""

from __future__ import annotations

import os
import ssl

from orquestrador.errors import ConfigError
from orquestrador.settings import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, TlsPaths


def _no_password() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key and hang a worker.
    return b""


def check_paths(paths: TlsPaths) -> None:
    """Refuse missing or unreadable files before connecting, naming the setting to fix."""
    for attr, what in (("ca", "CA certificate"), ("cert", "client certificate"), ("key", "client key")):
        path = getattr(paths, attr)
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ConfigError(
                f"{paths.settings.get(attr, attr)} points to {path!r}, which is not a readable file: "
                f"set it to the PEM file of the {what}"
            )
    if paths.key and not paths.cert:
        raise ConfigError(
            f"{paths.settings.get('key', 'key')} is set without a client certificate: "
            f"set {paths.settings.get('cert', ENV_TLS_CERT)} too"
        )


def ssl_context(paths: TlsPaths) -> ssl.SSLContext:
    """A verifying client context: the given CA (else the system's) and an optional client cert."""
    check_paths(paths)
    ca = paths.settings.get("ca", ENV_TLS_CA)
    try:
        context = ssl.create_default_context(cafile=paths.ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"{ca} ({paths.ca}) is not a PEM CA certificate: {exc.reason or exc}") from None
    if paths.cert:
        try:
            context.load_cert_chain(paths.cert, paths.key, password=_no_password)
        except ssl.SSLError as exc:
            cert = paths.settings.get("cert", ENV_TLS_CERT)
            key = paths.settings.get("key", ENV_TLS_KEY)
            raise ConfigError(
                f"{cert} ({paths.cert}) and {key} ({paths.key or 'in the same file'}) are not a matching "
                f"PEM certificate and unencrypted private key: {exc.reason or exc}"
            ) from None
    return context


def tls_failure(exc: BaseException | None) -> str | None:
    """What to change when ``exc`` (or an exception inside it) is a refused TLS handshake."""
    seen = 0
    text = ""
    while exc is not None and seen < 10:
        seen += 1
        if isinstance(exc, ssl.SSLCertVerificationError):
            return untrusted(exc.verify_message or exc.reason or "certificate verify failed")
        if isinstance(exc, ssl.SSLError):
            return _handshake(exc.reason or str(exc))
        text += " " + str(exc)
        inner = exc.__cause__ or exc.__context__ or getattr(exc, "exception", None)
        if inner is None and getattr(exc, "exceptions", None):  # pika's workflow failures
            inner = exc.exceptions[-1]  # type: ignore[attr-defined]
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        exc = inner
    # Drivers that flatten the SSL error into text (redis-py).
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return untrusted("certificate verify failed")
    if "SSL" in text and "alert" in text:
        return _handshake(text.strip())
    return None


def untrusted(detail: str) -> str:
    return (
        f"the server's TLS certificate is not trusted ({detail}): set {ENV_TLS_CA} or ?tls_ca= in the "
        "URL to the PEM file of the CA that signed it"
    )


def _handshake(detail: str) -> str:
    detail = " ".join(detail.split())[:200]
    if "CERTIFICATE_REQUIRED" in detail.upper() or "CERTIFICATE REQUIRED" in detail.upper():
        return (
            f"the server requires a client certificate ({detail}): set {ENV_TLS_CERT} and {ENV_TLS_KEY} "
            "(or ?tls_cert= and ?tls_key=) to a certificate signed by a CA the server trusts"
        )
    settings = f"{ENV_TLS_CA}/{ENV_TLS_CERT}/{ENV_TLS_KEY}"
    return f"the TLS handshake failed ({detail}); check the {settings} settings"
