"""Names of capture link types, to say which one a capture uses when it cannot be read."""

from __future__ import annotations

from typing import Final

# From https://www.tcpdump.org/linktypes.html: the types a capture is likely to carry.
_NAMES: Final = {
    0: "NULL",
    1: "ETHERNET",
    3: "AX25",
    6: "IEEE802_5",
    7: "ARCNET_BSD",
    8: "SLIP",
    9: "PPP",
    10: "FDDI",
    50: "PPP_HDLC",
    51: "PPP_ETHER",
    100: "ATM_RFC1483",
    101: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    107: "FRELAY",
    108: "LOOP",
    113: "LINUX_SLL",
    114: "LTALK",
    117: "PFLOG",
    119: "IEEE802_11_PRISM",
    122: "IP_OVER_FC",
    123: "SUNATM",
    127: "IEEE802_11_RADIOTAP",
    129: "ARCNET_LINUX",
    138: "APPLE_IP_OVER_IEEE1394",
    139: "MTP2_WITH_PHDR",
    140: "MTP2",
    141: "MTP3",
    142: "SCCP",
    143: "DOCSIS",
    144: "LINUX_IRDA",
    163: "IEEE802_11_AVS",
    165: "BACNET_MS_TP",
    166: "PPP_PPPD",
    169: "GPRS_LLC",
    177: "LINUX_LAPD",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    192: "PPI",
    195: "IEEE802_15_4_WITHFCS",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    220: "USB_LINUX_MMAPPED",
    227: "CAN_SOCKETCAN",
    228: "IPV4",
    229: "IPV6",
    231: "DBUS",
    239: "NFLOG",
    240: "NETANALYZER",
    249: "USBPCAP",
    252: "WIRESHARK_UPPER_PDU",
    254: "SCTP",
    263: "BLUETOOTH_LE_LL",
    276: "LINUX_SLL2",
    283: "USB_2_0",
}
_USER_FIRST: Final = 147
_USER_LAST: Final = 162


def describe_link_type(linktype: int) -> str:
    """ "link type N (NAME)", or "link type N" for a number whose name is not known here."""
    if _USER_FIRST <= linktype <= _USER_LAST:
        return f"link type {linktype} (USER{linktype - _USER_FIRST})"
    name = _NAMES.get(linktype)
    return f"link type {linktype} ({name})" if name else f"link type {linktype}"
