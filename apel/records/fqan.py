"""FQAN → (VO, VOGroup, VORole), as the existing server derives them.

Job records take VO/VOGroup/VORole from a non-null FQAN, cloud records always do,
and the client's BLAH parser does too, so the rule lives in one place.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from apel.records.fields import is_null


@lru_cache(maxsize=4096)  # a site sends few distinct FQANs, in every record
def parse_fqan(fqan: Optional[str]) -> tuple[str, str, str]:
    """Split an FQAN into ``(vo, vo_group, vo_role)``.

    Missing parts are the stored null string ``"None"``, so the result can
    go straight into a record.  Only the part before the first ``;`` counts; a
    value not starting with ``/`` is the VO itself; the role element is kept
    verbatim (``Role=NULL``) and anything after it (``Capability=NULL``) dropped.
    """
    if fqan is None or is_null(fqan.strip()):
        return "None", "None", "None"
    head = fqan.split(";", 1)[0]
    if not head.startswith("/"):
        return head or "None", "None", "None"
    elements = head.split("/")[1:]
    group: list[str] = []
    role = "None"
    for element in elements:
        if element[:5].lower() == "role=":
            role = element
            break
        group.append(element)
    vo = elements[0] if elements and elements[0] else "None"
    return vo, "/" + "/".join(group), role
