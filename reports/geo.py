"""Offline country and network of an address: MaxMind databases, or geoip2fast's own data."""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from rolecall.reports.errors import ReportInputError

LOCAL_COUNTRY = "lo"
LOCAL_NETWORK = "local"
BUILTIN_FILE = "geoip2fast-asn.dat.gz"
CACHE_SIZE = 65_536


@dataclass(frozen=True)
class GeoInfo:
    """Where an address is: ISO country, AS number, AS organisation, routed prefix ("" unknown)."""

    country: str = ""
    asn: str = ""
    org: str = ""
    prefix: str = ""


LOCAL = GeoInfo(LOCAL_COUNTRY, LOCAL_COUNTRY, LOCAL_NETWORK, LOCAL_NETWORK)
UNKNOWN = GeoInfo()


def is_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is private, loopback, link-local or otherwise not routed."""
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


def _nested(record: Any, *path: str) -> str:
    """A string found under nested keys of a MaxMind record ("" if absent)."""
    for key in path:
        if not isinstance(record, dict):
            return ""
        record = record.get(key)
    return "" if record is None else str(record)


class _MaxMind:
    """One opened MaxMind-format database."""

    def __init__(self, path: Path) -> None:
        try:
            self._reader = maxminddb.open_database(os.fspath(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ReportInputError(
                f"cannot read MaxMind database {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None

    def lookup(self, address: str) -> GeoInfo:
        """What this database knows of an address."""
        record, length = self._reader.get_with_prefix_len(address)
        if record is None:
            return UNKNOWN
        country = _nested(record, "country", "iso_code") or _nested(
            record, "registered_country", "iso_code"
        )
        asn = _nested(record, "autonomous_system_number")
        org = _nested(record, "autonomous_system_organization")
        network = ipaddress.ip_network(f"{address}/{length}", strict=False)
        return GeoInfo(country, f"AS{asn}" if asn else "", org, str(network))

    def close(self) -> None:
        """Release the database file."""
        self._reader.close()


class _Builtin:
    """geoip2fast's bundled GeoLite2-derived country + AS name data (IPv4)."""

    def __init__(self) -> None:
        # Imported by name: the package ships no type information.
        module = importlib.import_module("geoip2fast")
        data = Path(module.__file__ or "").parent / BUILTIN_FILE
        self._geo = module.GeoIP2Fast(geoip2fast_data_file=os.fspath(data), verbose=False)

    def lookup(self, address: str) -> GeoInfo:
        """What the bundled data knows of an address."""
        found = self._geo.lookup(address)
        country = getattr(found, "country_code", "") or ""
        if len(country) != 2 or not country.isalpha():
            country = ""
        org = getattr(found, "asn_name", "") or ""
        prefix = getattr(found, "asn_cidr", "") or getattr(found, "cidr", "") or ""
        return GeoInfo(country, "", str(org), str(prefix) if country or org else "")

    def close(self) -> None:
        """Nothing to release: the data lives in memory."""


def _merge(first: GeoInfo, second: GeoInfo) -> GeoInfo:
    """Fill the gaps of one answer with another; an AS answer's prefix wins."""
    prefix = first.prefix
    if second.asn and not first.asn:
        prefix = second.prefix or prefix
    return GeoInfo(
        first.country or second.country,
        first.asn or second.asn,
        first.org or second.org,
        prefix or second.prefix,
    )


class GeoLookup:
    """Looks addresses up in the databases given, or in the built-in data when none are."""

    def __init__(self, databases: Sequence[Path] = ()) -> None:
        self._sources: list[_MaxMind | _Builtin] = []
        try:
            for path in databases:
                self._sources.append(_MaxMind(path))
        except ReportInputError:
            self.close()
            raise
        self._builtin = not databases
        self.lookup = lru_cache(maxsize=CACHE_SIZE)(self._lookup)

    def _lookup(self, address: str) -> GeoInfo:
        """Country, AS and prefix of one address; private and loopback are local."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return UNKNOWN
        if is_local(parsed):
            return LOCAL
        if self._builtin and not self._sources:
            self._sources.append(_Builtin())
        info = UNKNOWN
        for source in self._sources:
            info = _merge(info, source.lookup(address))
        return info

    def close(self) -> None:
        """Release every opened database."""
        for source in self._sources:
            source.close()
        self._sources.clear()
