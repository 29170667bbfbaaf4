"""Bearer tokens of ``napari-sam2 serve``: read from a file, compared in constant time.

A token file holds one token per line (``#`` comments and blank lines ignored), so several
people or machines can have their own and one can be withdrawn by deleting its line and
restarting.  When the file does not exist, :func:`load_tokens` creates it with one new
random token, readable by its owner only.  Tokens are never logged: requests are told apart
by :func:`token_id`, a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..engine.backends.remote.client import is_loopback
from ..engine.errors import NapariSam2Error

MIN_TOKEN_CHARS = 16


class ServerConfigError(NapariSam2Error, ValueError):
    """The server cannot start with these settings (token file, bind address)."""


def token_id(token: str) -> str:
    """A short, non-reversible name of a token (rate limits, fair queue)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def load_tokens(path, *, create: bool = True) -> tuple[list[str], bool]:
    """``(tokens, created)`` of the token file at ``path`` (created with a new token when
    missing and ``create``)."""
    path = Path(path).expanduser()
    created = False
    if not path.exists():
        if not create:
            raise ServerConfigError(f"Token file {path} does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        created = True
    lines = path.read_text(encoding="utf-8").splitlines()
    tokens = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
    if not tokens:
        raise ServerConfigError(f"Token file {path} holds no token.")
    short = [i for i, t in enumerate(tokens) if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise ServerConfigError(
            f"Token file {path}: {len(short)} token(s) shorter than {MIN_TOKEN_CHARS} characters; "
            "use long random tokens (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return tokens, created


class TokenSet:
    """The accepted tokens; :meth:`check` compares in constant time against every one."""

    def __init__(self, tokens):
        self._tokens = [t.encode() for t in tokens]

    def check(self, header: str | None) -> str | None:
        """The token id of a valid ``Authorization: Bearer <token>`` header, else None."""
        if not header or not header.startswith("Bearer "):
            return None
        given = header[len("Bearer ") :].strip().encode()
        match = None
        for t in self._tokens:  # no early exit: the time does not tell which one matched
            if hmac.compare_digest(given, t):
                match = t
        return token_id(match.decode()) if match is not None else None


def check_bind(host: str, auth: bool) -> None:
    """Without authentication only loopback addresses may be bound."""
    if not auth and not is_loopback(host):
        raise ServerConfigError(
            f"--no-auth with --host {host}: without a token the server only binds loopback "
            "(127.0.0.1, ::1). Give --token-file to serve other machines."
        )
