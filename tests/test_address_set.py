"""AddressSet: membership of address texts in merged networks, as ipaddress decides it."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from rolecall.inventory.matching.address_set import AddressSet

NETWORKS = ("10.0.0.0/8", "192.0.2.7", "192.0.2.8/31", "2001:db8::/32", "::ffff:0:0/96")


def _reference(address: str) -> bool:
    """Membership as ipaddress decides it (unparsable text is in no network)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in NETWORKS)


def test_addresses_in_and_out() -> None:
    found = AddressSet(NETWORKS)
    assert "10.200.3.4" in found
    assert "192.0.2.7" in found
    assert "192.0.2.9" in found
    assert "192.0.2.10" not in found
    assert "2001:db8::1" in found
    assert "::ffff:10.1.2.3" in found
    assert "2001:db9::1" not in found


def test_text_that_is_no_address_is_in_nothing() -> None:
    found = AddressSet(NETWORKS)
    for text in ("010.1.2.3", "10.1.2", "10.1.2.3 ", "10.1.2.3\x00", "", 5):
        assert text not in found
    assert "10.1.2.3" not in AddressSet(())


OCTET = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["00", "01", "256", "-1", ""]))
DOTTED = st.lists(OCTET, min_size=3, max_size=5).map(".".join)
TEXT = st.one_of(
    DOTTED,
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789abcdef.:%x ", max_size=20),
)


@given(TEXT)
def test_membership_agrees_with_ipaddress(address: str) -> None:
    assert (address in AddressSet(NETWORKS)) == _reference(address)
