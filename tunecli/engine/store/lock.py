"""The lock of ``tunecli serve``: TLS and a shared token, on both sides of the door.

The server (``proxy.start``) takes a certificate chain and its key (``--tls-cert``/``--tls-key``)
and a token file (``--token-file``); its interceptor refuses a call without the token as
UNAUTHENTICATED. Every client (``storage`` opening a ``grpc://`` URL) trusts the CA file that
``TUNECLI_TLS_CA`` names and sends the token that ``TUNECLI_TOKEN_FILE`` holds as the
``tunecli-token`` metadata of every call. grpc is imported only where a lock is used.
"""

from __future__ import annotations

import hmac
import os
from collections import namedtuple
from pathlib import Path
from typing import Any

from tunecli.errors import SpecError

__all__ = ["TLS_CA_ENV", "TOKEN_FILE_ENV", "certificate", "client_lock", "read_secret",
           "token_check"]

TLS_CA_ENV = "TUNECLI_TLS_CA"          # clients: the CA file that signed serve's certificate
TOKEN_FILE_ENV = "TUNECLI_TOKEN_FILE"  # clients: the file holding serve's token
TOKEN_HEADER = "tunecli-token"  # the token's metadata key on every proxy call


def read_secret(path: str | Path, source: str, what: str) -> bytes:
    """A lock file's bytes (a certificate, a key, a token), or a one-line error."""
    try:
        found = Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path} ({exc.strerror or exc})", source=source,
                        fix="Give the file's path.") from None
    if not found:
        raise SpecError(f"{what} {path} is empty", source=source,
                        fix="Write the token into it: e.g. openssl rand -hex 32 > FILE.")
    return found


def certificate(cert_file: str, key_file: str) -> tuple[bytes, bytes]:
    """The certificate chain and its key, checked as a pair (gRPC would only fail to bind)."""
    import ssl

    pem = (read_secret(cert_file, "--tls-cert", "the certificate file"),
           read_secret(key_file, "--tls-key", "the key file"))
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise SpecError(f"{cert_file} and {key_file} are not a certificate and its private key "
                        f"({exc})", source="--tls-key",
                        fix="Give the PEM certificate chain and the key it was made with.") \
            from None
    return pem


def token_check(token: bytes) -> Any:
    """The server's interceptor: a call without the token is refused (UNAUTHENTICATED)."""
    import grpc

    def refuse(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "tunecli serve: wrong or missing token")

    refused = grpc.unary_unary_rpc_method_handler(refuse)

    class TokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            given = dict(details.invocation_metadata or ()).get(TOKEN_HEADER, "")
            if hmac.compare_digest(str(given).encode(), token):
                return continuation(details)
            return refused

    return TokenCheck()


_CallDetails = namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                           "wait_for_ready", "compression"))


def _token_header(token: bytes) -> Any:
    """The client's interceptor: every call carries the token."""
    import grpc

    class Details(_CallDetails, grpc.ClientCallDetails):  # type: ignore[misc]
        pass

    class TokenHeader(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            metadata = [*(details.metadata or ()), (TOKEN_HEADER, token.decode())]
            return continuation(Details(details.method, details.timeout, metadata,
                                        details.credentials, details.wait_for_ready,
                                        details.compression), request)

    return TokenHeader()


def client_lock() -> tuple[bytes | None, list[Any]]:
    """What this process's proxy clients use: the CA to trust (TLS) and the token's header,
    from ``TUNECLI_TLS_CA`` and ``TUNECLI_TOKEN_FILE`` (neither: in the clear, no token)."""
    ca_file, token_file = os.environ.get(TLS_CA_ENV), os.environ.get(TOKEN_FILE_ENV)
    ca = read_secret(ca_file, TLS_CA_ENV, "the CA file") if ca_file else None
    token = [_token_header(read_secret(token_file, TOKEN_FILE_ENV, "the token file"))] \
        if token_file else []
    return ca, token
