"""The fast DNS reader reads every message it accepts exactly as dpkt does, damaged or not."""

from __future__ import annotations

import random

import dpkt
import pytest

from rolecall.probes.passive.pcap.app_layer import _dns_by_dpkt, dns_plain, dns_records


def _answer(name: str, rtype: int, rdata: bytes) -> dpkt.dns.DNS.RR:
    """One resource record with the given data."""
    rr = dpkt.dns.DNS.RR(name=name, type=rtype, ttl=60, rlen=len(rdata))
    rr.rdata = rdata
    return rr


def _messages() -> list[bytes]:
    """Queries and answers as resolvers send them, with name compression."""
    query = dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name="Mail.Example.COM", type=dpkt.dns.DNS_A)])
    answer = dpkt.dns.DNS(bytes(query))
    answer.qr = dpkt.dns.DNS_R
    answer.an = [
        _answer("Mail.Example.COM", dpkt.dns.DNS_A, bytes([192, 0, 2, 7])),
        _answer("mail.example.com", dpkt.dns.DNS_AAAA, bytes(range(16))),
    ]
    cname = dpkt.dns.DNS(bytes(answer))
    cname.an = [_answer("x.example", dpkt.dns.DNS_CNAME, b"")]
    cname.an[0].cname, cname.an[0].rdata = "y.example", b""
    opt = dpkt.dns.DNS(bytes(query))
    opt.ar = [_answer("", 41, b"")]
    return [bytes(query), bytes(answer), bytes(cname), bytes(opt)]


def test_plain_messages_are_read_without_dpkt_and_as_dpkt_reads_them() -> None:
    query, answer, cname, opt = _messages()
    for payload in (query, answer, opt):
        assert dns_plain(payload) is not None
        assert dns_plain(payload) == _dns_by_dpkt(payload)
    assert dns_plain(cname) is None  # left to dpkt
    hosts = dns_records(answer, "10.0.0.1", "10.0.0.53", False, 1_700_000_000.0)
    assert {(h.address, h.name) for h in hosts} == {  # type: ignore[union-attr]
        ("192.0.2.7", "mail.example.com"),
        ("1:203:405:607:809:a0b:c0d:e0f", "mail.example.com"),
    }


@pytest.mark.parametrize("seed", range(4))
def test_damaged_messages_are_read_as_dpkt_reads_them(seed: int) -> None:
    rng = random.Random(seed)
    for base in _messages():
        for _ in range(2500):
            damaged = bytearray(base)
            for _ in range(rng.randrange(1, 4)):
                how = rng.randrange(3)
                if how == 0 and damaged:
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
                elif how == 1:
                    del damaged[rng.randrange(len(damaged) + 1) :]
                else:
                    damaged.insert(rng.randrange(len(damaged) + 1), rng.randrange(256))
            payload = bytes(damaged)
            plain = dns_plain(payload)
            if plain is not None:
                assert plain == _dns_by_dpkt(payload), payload.hex()
