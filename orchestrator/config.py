"""Loading and validating the TOML configuration; passed down, never read at import."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import netaddr
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import UsageError

DEFAULT_CONFIG = Path("rolecall.toml")
DEFAULT_PORTS = "21,22,25,53,80,110,143,443,465,587,993,995,1080,3128,8080,9050"


def _network(value: str) -> str:
    """Accept an address or CIDR and return its canonical CIDR form."""
    try:
        return str(netaddr.IPNetwork(value, flags=netaddr.NOHOST).cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an address or CIDR network") from exc


def parse_ports(value: str) -> str:
    """Accept an nmap-style TCP port list ("22,80,8000-8100") and return it normalised."""
    parts = []
    for part in value.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{value!r} is not a port list like 22,80,8000-8100") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{part.strip()!r} is not a port or port range within 1-65535")
        parts.append(f"{first}-{last}" if last != first else str(first))
    return ",".join(parts)


Network = Annotated[str, AfterValidator(_network)]
Ports = Annotated[str, AfterValidator(parse_ports)]


class _Section(BaseModel):
    """A config table: unknown keys and loose types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatabaseConfig(_Section):
    """[database]"""

    url: str = "rolecall.db"


class ScopeConfig(_Section):
    """[scope]"""

    allow: list[Network] = Field(default_factory=list)
    exclude: list[Network] = Field(default_factory=list)
    max_addresses: int = Field(default=65536, ge=1)


class ScanConfig(_Section):
    """[scan]"""

    nmap: str = "nmap"
    ports: Ports = DEFAULT_PORTS
    service_detection: bool = False
    timing: int = Field(default=3, ge=0, le=5)
    host_timeout: int = Field(default=300, ge=1)
    max_rate: int = Field(default=0, ge=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    skip_host_discovery: bool = False
    resolve_names: bool = True
    chunk_addresses: int = Field(default=256, ge=1)


class ProbesConfig(_Section):
    """[probes]"""

    enabled: list[str] = Field(
        default_factory=lambda: ["socks", "smtp", "web", "dns", "ssh", "ftp", "pop3", "imap"]
    )
    connect_timeout: float = Field(default=3.0, gt=0)
    read_timeout: float = Field(default=4.0, gt=0)
    banner_timeout: float = Field(default=2.0, gt=0)
    host_budget: float = Field(default=60.0, gt=0)
    concurrency: int = Field(default=32, ge=1)
    connect_rate: float = Field(default=200.0, gt=0)
    relay_sender: str = "rolecall-probe@example.com"
    relay_recipient: str = "rolecall-probe@example.net"
    helo_name: str = "rolecall-probe.invalid"
    canary_bind: str = ""
    ftp_anonymous: bool = True


class PcapConfig(_Section):
    """[pcap]"""

    idle_timeout: float = Field(default=300.0, gt=0)
    capture_socks_password: bool = False
    egress_window: float = Field(default=30.0, gt=0)


class ZeekConfig(_Section):
    """[zeek]"""

    keep_passwords: bool = False


class FirewallConfig(_Section):
    """[firewall]"""

    deny_prefixes: list[str] = Field(default_factory=lambda: ["RC-DENY"])
    accept_prefixes: list[str] = Field(default_factory=lambda: ["RC-ACCEPT"])
    timezone: str = "UTC"


class Config(_Section):
    """The whole configuration, with safe defaults for every setting."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    pcap: PcapConfig = Field(default_factory=PcapConfig)
    zeek: ZeekConfig = Field(default_factory=ZeekConfig)
    firewall: FirewallConfig = Field(default_factory=FirewallConfig)


def _location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a dotted TOML key."""
    return ".".join(str(part) for part in loc if not isinstance(part, int)) or "(top level)"


def _describe(error: Any) -> str:
    """One phrase for one pydantic error."""
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def validate_config(data: dict[str, Any], where: str) -> Config:
    """Validate parsed TOML; the error names the key and the file."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{where}: {_location(first['loc'])}: {_describe(first)}") from None


def load_config(path: Path | None) -> tuple[Config, Path | None]:
    """Load the config from path, or ./rolecall.toml if present, or the defaults."""
    if path is None:
        if not DEFAULT_CONFIG.is_file():
            return Config(), None
        path = DEFAULT_CONFIG
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return validate_config(data, str(path)), path
