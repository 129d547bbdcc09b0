"""Loading and validating the TOML configuration; passed down, never read at import."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import netaddr
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from rolecall.alerts.outputs.registry import AlertSettings
from rolecall.orchestrator.errors import UsageError

DEFAULT_CONFIG = Path("rolecall.toml")
# Mail and proxies on their usual alternates too (2525, 1081, 4145, 8118, 9150, 10080...).
DEFAULT_PORTS = (
    "21,22,25,53,80,110,143,443,465,587,993,995,1080,1081,2525,3128,4145,8000,8080,8081,"
    "8118,8888,9050,9150,10080"
)


# The widest IPv6 prefix swept by default (/112: 65536 addresses); [scan] max_ipv6_sweep.
MAX_IPV6_SWEEP = 112

# IPv6 spellings of IPv4 addresses (::ffff:a.b.c.d): a scope of IPv4 networks and its
# exclusions would not see them, so they are refused wherever an address is taken.
MAPPED_IPV4 = netaddr.IPNetwork("::ffff:0:0/96")

# NAT64 prefixes: the well-known 64:ff9b::/96 (RFC 6052, IPv4 in the last 32 bits) and the
# local-use 64:ff9b:1::/48 (RFC 8215, laid out as its operator chose). Behind a NAT64
# gateway their addresses are IPv4 addresses, so [scope] judges them as the IPv4 they hold.
NAT64_WELL_KNOWN = netaddr.IPNetwork("64:ff9b::/96")
NAT64_PREFIXES = (NAT64_WELL_KNOWN, netaddr.IPNetwork("64:ff9b:1::/48"))
# A /104 of 64:ff9b::/96 is an IPv4 /8; a wider NAT64 network may hold more IPv4 than that.
NAT64_WIDEST_PREFIX = 104


def is_nat64(network: netaddr.IPNetwork) -> bool:
    """Whether a network lies in a NAT64 prefix or takes one in."""
    return any(network in nat64 or nat64 in network for nat64 in NAT64_PREFIXES)


def _network(value: str) -> str:
    """Accept an address or CIDR and return its canonical CIDR form."""
    try:
        network = netaddr.IPNetwork(value, flags=netaddr.NOHOST).cidr
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an address or CIDR network") from exc
    if network.version == 6 and network in MAPPED_IPV4:
        raise ValueError(
            f"{value!r} is IPv4 written as IPv6 (::ffff:a.b.c.d): give IPv4 networks as IPv4"
        )
    return str(network)


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

# Wider than these, a scope takes in other people's networks unless someone says otherwise.
WIDEST_PREFIX = {4: 8, 6: 32}


def wide_reason(network: str) -> str:
    """Say why a CIDR network needs allow_wide in [scope] allow ("" if it does not)."""
    cidr = netaddr.IPNetwork(network)
    if cidr.prefixlen < WIDEST_PREFIX[cidr.version]:
        return f"{network} is wider than a /8 (IPv4) or /32 (IPv6)"
    if cidr.version == 6 and cidr.prefixlen < NAT64_WIDEST_PREFIX and is_nat64(cidr):
        return (
            f"{network} is NAT64 space (64:ff9b::/96, 64:ff9b:1::/48) that can hold more IPv4"
            " than a /8"
        )
    return ""


def is_wide(network: str) -> bool:
    """Whether a CIDR network is wider than a /8 (IPv4), a /32 (IPv6) or, in NAT64, a /104."""
    return bool(wide_reason(network))


def _narrow_unless_confirmed(allow: list[str], info: ValidationInfo) -> list[str]:
    """Refuse a network wider than a /8 or /32 in [scope] allow unless allow_wide confirms it."""
    wide = [reason for network in allow if (reason := wide_reason(network))]
    if wide and not info.data.get("allow_wide"):
        raise ValueError(
            f"{wide[0]}: if you may probe all of it, confirm with allow_wide = true in [scope]"
        )
    return allow


Ports = Annotated[str, AfterValidator(parse_ports)]


def _not_with_ports(top_ports: int | None, info: ValidationInfo) -> int | None:
    """Refuse top_ports next to ports: nmap takes one list of ports or its most common ones."""
    if top_ports is not None and info.data.get("ports") is not None:
        raise ValueError("give ports or top_ports, not both")
    return top_ports


# nmap --top-ports N: its N most common TCP ports (declared after ports, checked against it).
TopPorts = Annotated[int, Field(ge=1, le=65535), AfterValidator(_not_with_ports)]


class _Section(BaseModel):
    """A config table: unknown keys and loose types are errors."""

    # inf and nan are TOML floats, and no timeout, rate or duration of rolecall is one.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DatabaseConfig(_Section):
    """[database]"""

    url: str = "rolecall.db"


class ScopeConfig(_Section):
    """[scope]"""

    # Declared before allow, which is checked against it.
    allow_wide: bool = False
    allow: Annotated[list[Network], AfterValidator(_narrow_unless_confirmed)] = Field(
        default_factory=list
    )
    exclude: list[Network] = Field(default_factory=list)
    max_addresses: int = Field(default=65536, ge=1, le=1 << 24)


class ScanConfig(_Section):
    """[scan]"""

    nmap: str = "nmap"
    ports: Ports = DEFAULT_PORTS
    service_detection: bool = False
    timing: int = Field(default=3, ge=0, le=5)
    host_timeout: int = Field(default=300, ge=1, le=86400)
    max_rate: int = Field(default=0, ge=0, le=1_000_000)
    max_retries: int = Field(default=2, ge=0, le=10)
    skip_host_discovery: bool = False
    resolve_names: bool = True
    resolve_seconds: float = Field(default=3.0, ge=0, le=3600)
    chunk_addresses: int = Field(default=256, ge=1, le=65536)
    # An IPv6 prefix wider than this is never swept: only the addresses in it that the
    # inventory already knows are scanned. /104 holds scope.max_addresses' largest value.
    max_ipv6_sweep: int = Field(default=MAX_IPV6_SWEEP, ge=104, le=128)


class ProbesConfig(_Section):
    """[probes]"""

    enabled: list[str] = Field(
        default_factory=lambda: ["socks", "smtp", "web", "dns", "ssh", "ftp", "pop3", "imap"]
    )
    connect_timeout: float = Field(default=3.0, gt=0, le=300)
    read_timeout: float = Field(default=4.0, gt=0, le=300)
    banner_timeout: float = Field(default=2.0, gt=0, le=300)
    host_budget: float = Field(default=60.0, gt=0, le=86400)
    concurrency: int = Field(default=32, ge=1, le=1024)
    connect_rate: float = Field(default=200.0, gt=0, le=100_000)
    relay_sender: str = "rolecall-probe@example.com"
    relay_recipient: str = "rolecall-probe@example.net"
    helo_name: str = "rolecall-probe.invalid"
    canary_bind: str = ""
    ftp_anonymous: bool = True


class PcapConfig(_Section):
    """[pcap]"""

    idle_timeout: float = Field(default=300.0, gt=0, le=86400)
    capture_socks_password: bool = False  # SOCKS5 and HTTP CONNECT Basic passwords alike
    egress_window: float = Field(default=30.0, gt=0, le=86400)


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
    html_rows: int = Field(default=500, ge=10, le=1_000_000)


def split_bind(value: str) -> tuple[str, int]:
    """An ADDR:PORT to listen on ("127.0.0.1:8080", "[::1]:8080") as its address and port."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # IPv6 without brackets: its port cannot be told from the address
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        address, number = None, 0
    if not colon or address is None or not 1 <= number <= 65535:
        raise ValueError(f"{value!r} is not ADDR:PORT like 127.0.0.1:8080 or [::1]:8080")
    return str(address), number


def _bind(value: str) -> str:
    """Accept ADDR:PORT to listen on and return it normalised."""
    host, port = split_bind(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Bind = Annotated[str, AfterValidator(_bind)]

# The name of a console user or token: shown on pages and kept in the session.
AccessName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
ARGON2ID_HASH = re.compile(r"\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _argon2id(value: str) -> str:
    """Accept an argon2id hash string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)."""
    if not ARGON2ID_HASH.fullmatch(value):
        raise ValueError("is not an argon2id hash: make one with `rolecall serve adduser`")
    return value


def _sha256_hex(value: str) -> str:
    """Accept a SHA-256 digest in lowercase hex."""
    if not SHA256_HEX.fullmatch(value):
        raise ValueError("is not a SHA-256 hex digest: make one with `rolecall serve addtoken`")
    return value


class ServeUser(_Section):
    """One [[serve.users]] entry: a person who signs in to the console with a password."""

    name: AccessName
    level: Literal["read", "triage"]
    password_hash: Annotated[str, AfterValidator(_argon2id)]
    """argon2id, salted, as `rolecall serve adduser` prints it."""


class ServeToken(_Section):
    """One [[serve.tokens]] entry: a script sending `Authorization: Bearer TOKEN`."""

    name: AccessName
    level: Literal["read", "triage"]
    # SHA-256, not a slow password hash: the token is 256 random bits that nobody can guess
    # or look up, so a fast hash loses nothing and keeps every API request cheap.
    token_hash: Annotated[str, AfterValidator(_sha256_hex)]


class ServeConfig(_Section):
    """[serve]"""

    bind: Bind = "127.0.0.1:8080"
    cert: str = ""
    key: str = ""
    users: list[ServeUser] = Field(default_factory=list)
    tokens: list[ServeToken] = Field(default_factory=list)
    session_minutes: int = Field(default=480, ge=5, le=7 * 24 * 60)
    page_size: int = Field(default=50, ge=10, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        """One name per user or token; cert and key together."""
        names = [user.name for user in self.users] + [token.name for token in self.tokens]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"users and tokens: two entries are named {twice[0]!r}: each needs its own name"
            )
        if bool(self.cert) != bool(self.key):
            raise ValueError("give both cert and key for TLS, or neither")
        return self


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
    timeout: float = Field(default=30.0, gt=0, le=3600)
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
    # At most ten years: the next run is a date, and a date past the year 9999 overflows.
    every: int = Field(default=0, ge=0, le=10 * 366 * 24 * 3600)
    subnets: list[Network] = Field(default_factory=list)
    ports: Ports | None = None
    top_ports: TopPorts | None = None
    probes: list[str] | None = None
    watch: str = ""
    to: list[str] = Field(default_factory=list)
    # A scan queued to this site's workers (rolecall worker --site) instead of run here.
    site: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # An ingest run by this sensor's daemon (rolecall run --sensor) instead of the central one.
    sensor: str = Field(default="", max_length=64, pattern=r"^([A-Za-z0-9_.-]+)?$")


BROKER_SCHEMES = ("redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp")
"""Broker URL schemes Celery's kombu serves here: Redis (TLS, Sentinel) and RabbitMQ (AMQP)."""


def _broker_url(url: str) -> str:
    """Refuse a broker URL whose scheme no installed transport serves (not at first use)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise ValueError(
            f"{scheme!r} is no broker scheme this serves: give a URL starting with one"
            f" of {', '.join(f'{name}://' for name in BROKER_SCHEMES)}"
        )
    return url


class ClusterConfig(_Section):
    """[cluster]"""

    broker: Annotated[str, AfterValidator(_broker_url)] = Field(
        default="redis://127.0.0.1:6379/0", min_length=1
    )
    chunk_addresses: int = Field(default=256, ge=1, le=65536)
    chunk_time_limit: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    visibility_timeout: int = Field(default=7200, ge=2, le=30 * 24 * 3600)

    @model_validator(mode="after")
    def _redelivered_only_when_lost(self) -> ClusterConfig:
        """Refuse a visibility timeout within the time limit: a running chunk would run twice."""
        if self.visibility_timeout <= self.chunk_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}) must exceed chunk_time_limit"
                f" ({self.chunk_time_limit}), or the broker hands a chunk still running to a"
                " second worker"
            )
        return self


class DaemonConfig(_Section):
    """[daemon]"""

    log_file: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    misfire_grace_time: int = Field(default=7 * 24 * 3600, ge=1, le=366 * 24 * 3600)
    stop_timeout: float = Field(default=300.0, ge=0, le=86400)
    watch_settle: float = Field(default=10.0, ge=0, le=86400)
    alert_retry_seconds: float = Field(default=60.0, ge=1, le=86400)


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
    # Day counts stay within a century: a date that many days back must still be a date.
    resolve_after_hours: float = Field(default=24.0, gt=0, le=36500 * 24)
    new_client_learning_days: float = Field(default=7.0, ge=0, le=36500)
    workstation_window_days: int = Field(default=30, ge=1, le=36500)


class HistoryConfig(_Section):
    """[history]"""

    retention_days: int = Field(default=400, ge=1, le=36500)
    surge_baseline_days: int = Field(default=28, ge=2, le=36500)
    surge_min_baseline_days: int = Field(default=7, ge=1, le=36500)
    surge_threshold_mads: float = Field(default=3.0, gt=0, le=1000)
    surge_min_increase: int = Field(default=3, ge=1, le=1_000_000)


class RetentionConfig(_Section):
    """[retention]"""

    # Per-event rows (mail, SOCKS, CONNECT, flows, observations) older than this are pruned.
    days: int = Field(default=400, ge=1, le=36500)


def _unique_alert_names(outputs: list[Any]) -> list[Any]:
    """Refuse two [[alerts]] entries with one name (each keeps its own cursor by name)."""
    names = [output.name for output in outputs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"two entries are named {twice[0]!r}: each needs its own name")
    return outputs


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
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    schedule: list[ScheduleEntry] = Field(default_factory=list)
    report: ReportConfig = Field(default_factory=ReportConfig)
    groups: list[GroupConfig] = Field(default_factory=list)
    findings: FindingsConfig = Field(default_factory=FindingsConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    geo: GeoConfig = Field(default_factory=GeoConfig)
    alerts: Annotated[list[AlertSettings], AfterValidator(_unique_alert_names)] = Field(
        default_factory=list
    )
    _source: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        """The file this config was read from ("" for the defaults), for error sentences."""
        return self._source


def config_error(config: Config, message: str) -> UsageError:
    """A config error found after loading (KEY: what is wrong), naming the file first."""
    return UsageError(f"{config.source}: {message}" if config.source else message)


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
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{where}: {_location(first['loc'])}: {_describe(first)}") from None
    config._source = where
    _check_alert_rules(config, where)
    _check_serve_tls(config.serve, where)
    return config


def _check_serve_tls(serve: ServeConfig, where: str) -> None:
    """Refuse a [serve] cert or key that cannot be read or that do not make a TLS server."""
    if not serve.cert:
        return
    import ssl  # noqa: PLC0415 - only a console with TLS needs it

    for key in ("cert", "key"):
        path = Path(getattr(serve, key))
        if not path.is_file():
            raise UsageError(f"{where}: serve.{key}: {path} is not a file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(serve.cert, serve.key)
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise UsageError(
            f"{where}: serve.cert, serve.key: not a certificate and its key ({why})"
        ) from None


def _check_alert_rules(config: Config, where: str) -> None:
    """Refuse an `[[alerts]]` rules entry naming no finding rule: that output would get nothing."""
    wanted = {rule for output in config.alerts for rule in output.rules}
    if not wanted:
        return
    # The rules load the database layer: only when an output filters by rule.
    from rolecall.inventory.rules import all_rules  # noqa: PLC0415

    names = sorted(known.name for known in all_rules())
    for index, output in enumerate(config.alerts):
        for rule in output.rules:
            if rule not in names:
                raise UsageError(
                    f"{where}: alerts.{index}.rules: {rule!r} is not a rule id;"
                    f" the rules are {', '.join(names)}"
                )


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
