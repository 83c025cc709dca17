"""JSON Schema files generated from the contract models, for producers in any language."""

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.flag import ModerationFlag
from schemas.packets import IwfPacket, NcaPacket, PolicePacket
from schemas.referral import Decision, ReferralTask, RejectedMessage

CONTRACTS: dict[str, type[BaseModel]] = {
    "moderation_flag.v1.json": ModerationFlag,
    "referral_task.v1.json": ReferralTask,
    "decision.v1.json": Decision,
    "rejected_message.v1.json": RejectedMessage,
    "police_packet.v1.json": PolicePacket,
    "iwf_packet.v1.json": IwfPacket,
    "nca_packet.v1.json": NcaPacket,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in CONTRACTS.items():
        path = directory / name
        path.write_text(render(model))
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """Names of the files that differ from what the models generate now."""
    return [
        name
        for name, model in CONTRACTS.items()
        if not (directory / name).exists() or (directory / name).read_text() != render(model)
    ]
