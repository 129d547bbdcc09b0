"""The console's users and tokens from [serve], and how a request proves it is one of them."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher

from rolecall.console.access.hashes import password_hasher, password_matches, token_digest
from rolecall.console.access.user import User
from rolecall.orchestrator.config import ServeConfig


@dataclass(frozen=True)
class Accounts:
    """Who may use a console: [serve] users (password) and tokens (Bearer), by name and level."""

    users: dict[str, tuple[User, str]]
    """name -> the user and their argon2id hash."""
    tokens: dict[str, User]
    """SHA-256 hex of a token -> who holds it."""
    hasher: PasswordHasher
    stand_in: str
    """A hash of nothing anyone knows: an unknown name costs what a known one does."""
    generations: dict[str, int] = field(default_factory=dict)
    """name -> how many times they signed out: a session from before is no longer valid."""

    @classmethod
    def of(cls, serve: ServeConfig) -> Accounts:
        """The users and tokens [serve] defines."""
        hasher = password_hasher()
        return cls(
            users={
                entry.name: (User(entry.name, entry.level), entry.password_hash)
                for entry in serve.users
            },
            tokens={entry.token_hash: User(entry.name, entry.level) for entry in serve.tokens},
            hasher=hasher,
            stand_in=hasher.hash(secrets.token_urlsafe(16)) if serve.users else "",
        )

    @property
    def open(self) -> bool:
        """No users and no tokens: everyone is the local triage user (loopback only)."""
        return not self.users and not self.tokens

    def signed_in(self, name: object, generation: object) -> User | None:
        """The user a session names, if [serve] still has them and they did not sign out since."""
        entry = self.users.get(name) if isinstance(name, str) else None
        if entry is None or generation != self.generation(entry[0].name):
            return None
        return entry[0]

    def generation(self, name: str) -> int:
        """How many times the user signed out (a session records it when it signs in)."""
        return self.generations.get(name, 0)

    def sign_out(self, name: str) -> None:
        """End every session of the user, wherever its cookie is."""
        self.generations[name] = self.generation(name) + 1

    def check_password(self, name: str, password: str) -> User | None:
        """The user, if the password is theirs; the same work is done for an unknown name."""
        user, password_hash = self.users.get(name, (None, self.stand_in))
        matches = password_matches(self.hasher, password_hash, password)
        return user if matches and user is not None else None

    def bearer(self, token: str) -> User | None:
        """The holder of a token, if [serve] lists its hash."""
        digest = token_digest(token)
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return user
        return None
