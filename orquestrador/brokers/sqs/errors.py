"""The one place botocore's failures become the toolkit's: :func:`mapped` around every call into
the SQS and SNS clients, and :func:`unreachable` for a first call that cannot get through.

An endpoint that does not answer is ``BrokerUnavailable``; missing credentials or region are
``ConfigError`` (the AWS chain found none: the fix is in the environment, never the URL); any
other AWS error is ``BrokerError`` with its code. A queue that does not exist is the one
condition callers catch by name (:func:`is_missing_queue`): it was deleted behind their back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
import botocore.exceptions as bexc

from orquestrador.errors import BrokerError, BrokerUnavailable, ConfigError

ClientError = bexc.ClientError
# What a call may raise that cleanup and best-effort events only log.
DRIVER_ERRORS = (bexc.BotoCoreError, bexc.ClientError, aiohttp.ClientError, OSError, TimeoutError)
_UNREACHABLE = (
    bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError,
    bexc.ConnectionClosedError, bexc.HTTPClientError, aiohttp.ClientError, OSError, TimeoutError,
)  # fmt: skip
_NO_CREDENTIALS = (bexc.NoCredentialsError, bexc.PartialCredentialsError, bexc.CredentialRetrievalError)
_MISSING_QUEUE = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}
_DENIED = {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
           "UnrecognizedClientException", "ExpiredToken", "InvalidAccessKeyId"}  # fmt: skip


def code_of(exc: BaseException) -> str:
    if isinstance(exc, bexc.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_missing_queue(exc: BaseException) -> bool:
    return code_of(exc) in _MISSING_QUEUE


def is_denied(exc: BaseException) -> bool:
    return code_of(exc) in _DENIED


def _reason(exc: BaseException) -> str:
    if isinstance(exc, bexc.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip(": ")
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Driver errors inside become BrokerUnavailable / ConfigError / BrokerError(``what``: reason)."""
    try:
        yield
    except _NO_CREDENTIALS as exc:
        raise ConfigError(f"{what}: {no_credentials(exc)}") from exc
    except bexc.NoRegionError as exc:
        raise ConfigError(f"{what}: {no_region()}") from exc
    except _UNREACHABLE as exc:
        raise BrokerUnavailable(f"{what}: SQS did not answer ({_reason(exc)})") from exc
    except bexc.ClientError as exc:
        if is_denied(exc):
            raise BrokerError(f"{what}: AWS refused the credentials ({code_of(exc)}); check the "
                              "AWS profile, keys or role in the environment") from exc  # fmt: skip
        raise BrokerError(f"{what}: {_reason(exc)}") from exc
    except bexc.BotoCoreError as exc:
        raise BrokerError(f"{what}: {_reason(exc)}") from exc


def no_credentials(exc: BaseException) -> str:
    return (
        f"no usable AWS credentials ({type(exc).__name__}): set AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an instance or task role "
        "(sqs:// URLs never carry credentials)"
    )


def no_region() -> str:
    return "no AWS region: name it in the URL (sqs://us-east-1) or set AWS_REGION"


def unreachable(exc: BaseException, where: str) -> BrokerError | ConfigError:
    """One line for a first call that failed (``where``: the endpoint or region)."""
    if isinstance(exc, _NO_CREDENTIALS):
        return ConfigError(f"cannot use SQS at {where}: {no_credentials(exc)}")
    if isinstance(exc, bexc.NoRegionError):
        return ConfigError(f"cannot use SQS: {no_region()}")
    if isinstance(exc, bexc.ClientError):
        return BrokerError(f"SQS at {where} refused the first call: {_reason(exc)}")
    return BrokerUnavailable(f"cannot reach SQS at {where}: {_reason(exc)}; is the endpoint right?")
