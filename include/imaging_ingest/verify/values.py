"""An element's values as text, as the verifier reads them (its own reading, not the de-identifier's)."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import RawDataElement

__all__ = ["element_strings"]


def element_strings(elem: Any) -> list[str]:
    """The values of one element as text.

    A raw element (not yet converted by pydicom) is decoded as UTF-8, falling back to Latin-1,
    and split on the value separator; a converted bytes value is read as Latin-1, so that an
    identifying string in it is seen as text, never as a ``b'...'`` literal.
    """
    if type(elem) is RawDataElement:
        raw = elem.value or b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        return [v.strip(" \x00") for v in text.split("\\")]
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1").strip(" \x00")]
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]
