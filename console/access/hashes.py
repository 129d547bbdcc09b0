"""Passwords and tokens as the config keeps them: argon2id for passwords, SHA-256 for tokens."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_BYTES = 32
"""256 random bits: no one guesses such a token, so its SHA-256 needs no slow hash or salt."""


def password_hasher() -> PasswordHasher:
    """argon2-cffi's hasher with its defaults (argon2id, RFC 9106's low-memory profile)."""
    return PasswordHasher()


def hash_password(password: str) -> str:
    """The salted argon2id hash of a password, as [[serve.users]] password_hash keeps it."""
    return password_hasher().hash(password)


def password_matches(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """Whether a password is the one hashed (argon2's own comparison takes constant time)."""
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A new random API token (URL-safe text)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """A token's SHA-256 in lowercase hex, as [[serve.tokens]] token_hash keeps it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
