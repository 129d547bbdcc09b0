"""Reading nmap XML safely and as a stream: hosts, names, open ports and services.

defusedxml refuses entity declarations and external references (XML bombs,
XXE); the document is read host by host so a large scan stays small in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse as safe_iterparse

from rolecall.probes.errors import InputError
from rolecall.probes.records import HostName, Observation, Record, Service


def read_nmap_xml(stream: IO[bytes], where: str, source: str) -> Iterator[Record]:
    """Yield the records of an nmap XML document; InputError names where it went wrong."""
    for host in read_nmap_hosts(stream, where, source):
        yield from host


def read_nmap_hosts(
    stream: IO[bytes],
    where: str,
    source: str,
    progress: Callable[[str, float], None] | None = None,
) -> Iterator[list[Record]]:
    """Yield each <host>'s records (none for a host down) as soon as the host is read.

    progress, if given, hears each <taskprogress> (nmap --stats-every): task and percent.
    """
    try:
        yield from _hosts(stream, where, source, progress)
    except DefusedXmlException:
        raise InputError(
            f"{where}: refused XML with entity declarations or external references"
            " (an XML bomb or external entity)"
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise InputError(f"{where}: not well-formed XML at line {line}, column {column}") from None


def _hosts(
    stream: IO[bytes],
    where: str,
    source: str,
    progress: Callable[[str, float], None] | None,
) -> Iterator[list[Record]]:
    """Walk the document host by host, freeing each host once read."""
    root: Element | None = None
    started = datetime.now(UTC)
    for event, element in safe_iterparse(stream, events=("start", "end")):
        if root is None:
            root = element
            if element.tag != "nmaprun":
                raise InputError(f"{where}: not an nmap XML file (root element <{element.tag}>)")
            started = _timestamp(element.get("start"), started)
        elif event == "end" and element.tag == "host":
            yield list(_host_records(element, source, started))
            root.clear()
        elif event == "end" and element.tag == "taskprogress" and progress is not None:
            progress(element.get("task", ""), _percent(element.get("percent")))
        elif event == "end" and element.tag == "finished" and element.get("exit") == "error":
            message = element.get("errormsg", "unknown error")
            raise InputError(f"{where}: nmap reported an error: {message}")


def _percent(value: str | None) -> float:
    """Parse a <taskprogress> percent, 0 if it is not a number from 0 to 100."""
    try:
        percent = float(value or "")
    except ValueError:
        return 0.0
    return percent if 0.0 <= percent <= 100.0 else 0.0


def _timestamp(value: str | None, fallback: datetime) -> datetime:
    """Parse an nmap epoch-seconds attribute, or return fallback."""
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return fallback


def _host_records(host: Element, source: str, started: datetime) -> Iterator[Record]:
    """Records for one <host>: up, names, open ports and services."""
    status = host.find("status")
    if status is None or status.get("state") != "up":
        return
    address = _address(host)
    if address is None:
        return
    seen = _timestamp(host.get("endtime") or host.get("starttime"), started)
    yield Observation(address, "host-up", source, seen, value=status.get("reason", ""))
    for hostname in host.iterfind("hostnames/hostname"):
        if name := hostname.get("name"):
            yield HostName(address, name, source, seen)
    for port in host.iterfind("ports/port"):
        yield from _port_records(address, port, source, seen)


def _address(host: Element) -> str | None:
    """The host's IP address (IPv4 or IPv6), ignoring MAC addresses."""
    for element in host.iterfind("address"):
        if element.get("addrtype") in {"ipv4", "ipv6"}:
            return element.get("addr")
    return None


def _port_records(address: str, port: Element, source: str, seen: datetime) -> Iterator[Record]:
    """Records for one open <port>; closed and filtered ports say nothing about a role."""
    state = port.find("state")
    if state is None or state.get("state") != "open":
        return
    try:
        number = int(port.get("portid", ""))
    except ValueError:
        return
    transport = port.get("protocol", "tcp")
    service = port.find("service")
    name = service.get("name", "") if service is not None else ""
    yield Observation(
        address,
        "port-open",
        source,
        seen,
        port=number,
        transport=transport,
        value=name,
        detail=json.dumps({"reason": state.get("reason", "")}),
    )
    # A name from nmap's port table is a guess from the number, not what the port speaks.
    probed = service is not None and service.get("method") == "probed"
    attrs = dict(service.attrib) if service is not None else {}
    product, version = attrs.get("product", ""), attrs.get("version", "")
    if probed:
        described = " ".join(part for part in (name, product, version) if part)
        yield Observation(
            address,
            "service",
            source,
            seen,
            port=number,
            transport=transport,
            value=described,
            detail=json.dumps(attrs),
        )
    yield Service(
        address,
        number,
        transport,
        source,
        seen,
        protocol=name if probed else "",
        product=product,
        version=version,
        banner=_script_output(port, "banner"),
    )


def _script_output(port: Element, script_id: str) -> str:
    """The output of one NSE script on a port, or an empty string."""
    for script in port.iterfind("script"):
        if script.get("id") == script_id:
            return script.get("output", "")
    return ""


def read_nmap_xml_file(path: Path) -> Iterator[Record]:
    """Yield the records of an nmap XML file; InputError if it cannot be read."""
    try:
        handle = path.open("rb")
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        if empty:
            raise InputError(f"{path}: empty file, not an nmap XML file")
        yield from read_nmap_xml(handle, str(path), "nmap-xml")
