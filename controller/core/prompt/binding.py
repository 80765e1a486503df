"""An agent's prompt binding (``spec.prompts: {system: support-system@production}``), and the
pin it resolves to when a version is logged. Pure data: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROMPTS_CONFIG_KEY",
    "PROMPTS_TAG",
    "Binding",
    "PromptPin",
    "parse_binding",
    "pins_of",
    "pins_tag",
]

#: The model config key under which a logged version finds its pinned prompts' URIs.
PROMPTS_CONFIG_KEY = "prompts"
#: On an agent's version: the prompts it was logged with, ``system=prompts:/support-system/7``.
PROMPTS_TAG = "agentctl.io/prompts"


@dataclass(frozen=True, slots=True)
class Binding:
    """``key`` -> the prompt ``prompt`` by ``alias`` or by ``version`` (exactly one)."""

    key: str
    prompt: str
    alias: str | None = None
    version: int | None = None

    @property
    def ref(self) -> str:
        """As the manifest writes it: ``support-system@production`` or ``support-system/7``."""
        return (
            f"{self.prompt}@{self.alias}"
            if self.alias is not None
            else f"{self.prompt}/{self.version}"
        )


def parse_binding(key: str, value: str) -> Binding:
    """``support-system@production`` or ``support-system/7`` (the schema checked the form)."""
    if "@" in value:
        prompt, alias = value.split("@", 1)
        return Binding(key, prompt, alias=alias)
    prompt, number = value.rsplit("/", 1)
    return Binding(key, prompt, version=int(number))


def pins_tag(pinned: Mapping[str, str]) -> str:
    """The :data:`PROMPTS_TAG` value of a version logged with ``pinned`` (key -> URI)."""
    return ",".join(f"{k}={u}" for k, u in sorted(pinned.items()))


def pins_of(tags: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """key -> (prompt, version) out of a version's :data:`PROMPTS_TAG` (a value agentctl did
    not write is skipped, entry by entry)."""
    out: dict[str, tuple[str, int]] = {}
    for entry in (tags.get(PROMPTS_TAG) or "").split(","):
        key, _, uri = entry.partition("=")
        prompt, _, number = uri.removeprefix("prompts:/").rpartition("/")
        if key and uri.startswith("prompts:/") and prompt and number.isdigit():
            out[key] = (prompt, int(number))
    return out


@dataclass(frozen=True, slots=True)
class PromptPin:
    """A binding resolved for one agent version: the prompt version with content ``digest``
    (its number, when the registry already has it; None: the version this apply registers)."""

    key: str
    prompt: str
    digest: str
    version: int | None = None
    ref: str = ""  # the binding as the manifest writes it, for messages

    def uri(self, number: int) -> str:
        return f"prompts:/{self.prompt}/{number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "prompt": self.prompt,
            "digest": self.digest,
            "version": self.version,
            "ref": self.ref,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptPin:
        version = data.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValueError(f"expected a version number, not {version!r}")
        return cls(
            str(data["key"]),
            str(data["prompt"]),
            str(data["digest"]),
            version,
            str(data.get("ref") or ""),
        )
