"""A stored packet version as the bytes the API serves, in each format. Pure.

One function for the route that serves a packet and for the delivery receipt of a submission,
so a receipt's sha256 is that of the bytes a person downloaded for that version and format.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter

from schemas.packets import Packet
from services.referral import ncmec_xml
from services.referral.packet_text import render_text

Format = Literal["json", "text", "ncmec-xml"]

_packet = TypeAdapter[Packet](Packet)


@dataclass(frozen=True, slots=True)
class Rendered:
    content: bytes
    media_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def render(body: dict[str, Any], rendering: Format, *, service: str | None = None) -> Rendered:
    """The stored packet `body` as served with `?format=rendering`. JSON is written as FastAPI's
    `JSONResponse` writes it (compact, UTF-8), in the stored order. `service`: the platform's
    service, named by a CyberTipline report. Raises `ncmec_xml.NotForNcmec` (400) for
    `ncmec-xml` of a packet not for NCMEC."""
    if rendering == "text":
        text = render_text(_packet.validate_python(body))
        return Rendered(text.encode(), "text/plain; charset=utf-8")
    if rendering == "ncmec-xml":
        report = ncmec_xml.render(_packet.validate_python(body), service=service)
        return Rendered(report, "application/xml")
    content = json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()
    return Rendered(content, "application/json")
