"""The shapes every layer agrees on: a parsed message and its records.

Records are plain dicts keyed by the *field names of the messages*
(``Site``, ``LocalJobId``, ``ServiceLevel``...),
already validated and normalised, so the storage layer and the renderers never
see raw text:

- strings: ``str``; a null or missing string is the literal ``"None"``;
- integers: ``int`` or ``None``; floats: ``float`` or ``None``;
- datetimes: timezone-aware UTC ``datetime.datetime`` or ``None``;
- derived values are filled in (VO/VOGroup/VORole from FQAN; ServiceLevelType
  and ServiceLevel chosen from v0.4 benchmark dicts).

Nothing here knows about databases or queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Record types, named as the storage layer names its tables' contents.
JOB = "job"
SUMMARY = "summary"
NORMALISED_SUMMARY = "normalised_summary"
SYNC = "sync"
CLOUD = "cloud"
CLOUD_SUMMARY = "cloud_summary"
STORAGE = "storage"
GROUP_ATTRIBUTE = "group_attribute"

RECORD_TYPES = (
    JOB, SUMMARY, NORMALISED_SUMMARY, SYNC, CLOUD, CLOUD_SUMMARY, STORAGE, GROUP_ATTRIBUTE,
)

Record = dict[str, Any]


class InvalidMessage(Exception):
    """The message cannot be accepted; ``str(exc)`` is the reason a human acts on.

    The loader writes it to the reject queue as ``Parsing unsuccessful: <reason>``.
    The reason names the record (1-based index), the field, the value and the rule.
    """


@dataclass
class ParsedMessage:
    """Every record of one message, all of one type, all already valid."""

    record_type: str
    header: str  # the header line as sent, or the XML root element's name
    records: list[Record] = field(default_factory=list)
    # StAR only: the group-attribute records (StarRecordID, AttributeType, AttributeValue)
    group_attributes: list[Record] = field(default_factory=list)
