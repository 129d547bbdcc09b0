"""nmap XML documents for tests: real scans are made by the tests; these are hostile or large."""

from __future__ import annotations

from pathlib import Path

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
    '<nmaprun scanner="nmap" args="nmap -sT" start="1795485410" version="7.93"'
    ' xmloutputversion="1.05">\n'
)
TAIL = '<runstats><finished time="1795485411" exit="success"/></runstats>\n</nmaprun>\n'

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    ' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    ']>\n<nmaprun><host><status state="up"/><address addr="&lol3;" addrtype="ipv4"/>'
    "</host></nmaprun>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE nmaprun [\n'
    ' <!ENTITY passwd SYSTEM "file:///etc/passwd">\n]>\n'
    '<nmaprun><host><status state="up"/><hostnames><hostname name="&passwd;"/></hostnames>'
    '<address addr="10.9.9.9" addrtype="ipv4"/></host></nmaprun>\n'
)


def host_xml(address: str, port: int, name: str = "", banner: str = "") -> str:
    """One <host> element with one open TCP port, as nmap writes it."""
    names = f'<hostname name="{name}" type="PTR"/>' if name else ""
    script = f'<script id="banner" output="{banner}"/>' if banner else ""
    return (
        f'<host starttime="1795485410" endtime="1795485411"><status state="up"'
        f' reason="syn-ack" reason_ttl="0"/>\n<address addr="{address}" addrtype="ipv4"/>\n'
        f"<hostnames>{names}</hostnames>\n"
        f'<ports><port protocol="tcp" portid="{port}"><state state="open" reason="syn-ack"'
        f' reason_ttl="0"/><service name="smtp" method="table" conf="3"/>{script}</port>\n'
        "</ports>\n</host>\n"
    )


def write_scan(path: Path, hosts: int, corrupt_tail: bool = False) -> Path:
    """Write an nmap XML file of many hosts, optionally cut off mid-element at the end."""
    with path.open("w") as handle:
        handle.write(HEAD)
        for index in range(hosts):
            handle.write(host_xml(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 25))
        handle.write(
            '<host><status state="up"/><address addr="10.255.0.1"' if corrupt_tail else TAIL
        )
    return path
