"""Loading and validating the TOML configuration; passed down, never read at import."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import netaddr
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from rolecall.orchestrator.errors import UsageError

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
    resolve_seconds: float = Field(default=3.0, ge=0)
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


class ReportConfig(_Section):
    """[report]"""

    template_dir: str = ""
    html_rows: int = Field(default=500, ge=10)


class EmailConfig(_Section):
    """[email]"""

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    user: str = ""
    password: str = ""
    password_file: str = ""
    sender: str = "rolecall@localhost"
    to: list[str] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0)
    keep_dir: str = "reports"
    ca_file: str = ""


class GeoConfig(_Section):
    """[geo]"""

    databases: list[str] = Field(default_factory=list)


class ScheduleEntry(_Section):
    """One [[schedule]] entry: a job (scan, ingest, report-email) and when it runs."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    job: Literal["scan", "ingest", "report-email"]
    cron: str = ""
    every: int = Field(default=0, ge=0)
    subnets: list[Network] = Field(default_factory=list)
    ports: Ports | None = None
    probes: list[str] | None = None
    watch: str = ""
    to: list[str] = Field(default_factory=list)


class DaemonConfig(_Section):
    """[daemon]"""

    log_file: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    misfire_grace_time: int = Field(default=7 * 24 * 3600, ge=1)
    stop_timeout: float = Field(default=300.0, ge=0)
    watch_settle: float = Field(default=10.0, ge=0)


class GroupConfig(_Section):
    """One [[groups]] entry: members by network, address, hostname, roles or ports; a policy."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    networks: list[Network] = Field(default_factory=list)
    addresses: list[Network] = Field(default_factory=list)
    hostnames: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    ports: list[str] = Field(default_factory=list)
    exclude_networks: list[Network] = Field(default_factory=list)
    exclude_groups: list[str] = Field(default_factory=list)
    expected_roles: list[str] = Field(default_factory=list)
    forbidden_roles: list[str] = Field(default_factory=list)
    may_send_mail: bool | None = None
    mail_relays: list[str] = Field(default_factory=list)


class FindingsConfig(_Section):
    """[findings]"""

    approved_relays: list[Network] = Field(default_factory=list)
    mass_mailers: list[str] = Field(default_factory=list)
    blocklists: list[str] = Field(default_factory=list)
    resolve_after_hours: float = Field(default=24.0, gt=0)
    new_client_learning_days: float = Field(default=7.0, ge=0)
    workstation_window_days: int = Field(default=30, ge=1)


class HistoryConfig(_Section):
    """[history]"""

    retention_days: int = Field(default=400, ge=1)
    surge_baseline_days: int = Field(default=28, ge=2)
    surge_min_baseline_days: int = Field(default=7, ge=1)
    surge_threshold_mads: float = Field(default=3.0, gt=0)
    surge_min_increase: int = Field(default=3, ge=1)


class Config(_Section):
    """The whole configuration, with safe defaults for every setting."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    pcap: PcapConfig = Field(default_factory=PcapConfig)
    zeek: ZeekConfig = Field(default_factory=ZeekConfig)
    firewall: FirewallConfig = Field(default_factory=FirewallConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    schedule: list[ScheduleEntry] = Field(default_factory=list)
    report: ReportConfig = Field(default_factory=ReportConfig)
    groups: list[GroupConfig] = Field(default_factory=list)
    findings: FindingsConfig = Field(default_factory=FindingsConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    geo: GeoConfig = Field(default_factory=GeoConfig)


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


def schedule_entry(values: dict[str, Any], label: str) -> ScheduleEntry:
    """Values validated as a [[schedule]] entry; the UsageError begins with label."""
    try:
        return ScheduleEntry.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UsageError(f"{label}{where}: {message}") from None


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
