"""A pydicom data set from a raw parse: what ``dcmread(stop_before_pixels=True)`` gives, without reading again.

The de-identification engine works on a pydicom ``Dataset`` whose elements are still
``RawDataElement`` s (converted only when touched), and ``dcmread`` builds exactly that, at
about three times the cost of ``core.raw_elements.parse`` on a scanner's header. A caller
that has parsed a file already (``deid.batch`` parses each source once, for the engine and
for the verifier's scan) builds the same data set from the parse here: the same raw
elements (tag, VR, length, value bytes; sequences of defined length as their bytes, which
pydicom converts when touched, as it does after ``dcmread``), the same file meta, the same
original encoding.

Only the plain case is taken; ``None`` sends the caller to ``dcmread``, which decides every
other one as it always did: an element of undefined length (pydicom reads those sequences
as it goes), a data set whose first element contradicts the transfer syntax's VR encoding
(pydicom switches encoding), an empty data set, or an item or sequence delimiter at the top
level.

One difference is knowingly left: ``RawDataElement.value_tell`` (where the value sat in the
file) is 0. Nothing de-identification does reads it; pydicom only records it.
"""

from __future__ import annotations

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag

from imaging_ingest.core.raw_elements import UNDEFINED, RawFile, RawItem, looks_implicit

__all__ = ["file_dataset"]

_CHARSET = 0x00080005
_DELIMITER_GROUP = 0xFFFE
_new = tuple.__new__


def _raw_elements(item: RawItem, implicit: bool) -> dict[BaseTag, RawDataElement | DataElement] | None:
    """The ``RawDataElement`` s pydicom's reader makes of an item's elements (None: a case it reads otherwise)."""
    out: dict[BaseTag, RawDataElement | DataElement] = {}
    for tag, (_, vr, length, value, _items) in item.items():
        if length == UNDEFINED or tag >> 16 == _DELIMITER_GROUP:
            return None
        key = BaseTag(tag)
        stated = None if implicit else vr
        held = value if length else empty_value_for_VR(stated, raw=True)  # as pydicom's reader: None or b""
        out[key] = _new(RawDataElement, (key, stated, length, held, 0, implicit, True, True, False))
    return out


def file_dataset(data: bytes, raw: RawFile) -> FileDataset | None:
    """The data set ``dcmread(BytesIO(data), stop_before_pixels=True)`` returns, built from ``raw`` (``data``'s parse).

    Built as ``dcmread`` builds it (``filereader.read_partial``, ``read_dataset``,
    ``_read_file_meta_info``), step for step. None where pydicom's reading could differ (see
    the module docstring): the caller reads with pydicom.
    """
    meta_elements = _raw_elements(raw.meta, False)
    elements = _raw_elements(raw.dataset, raw.implicit)
    if meta_elements is None or elements is None or not elements:
        return None
    if looks_implicit(data, raw.dataset_start) != raw.implicit:
        return None  # pydicom would switch encoding, with a warning
    file_meta = FileMetaDataset(Dataset(meta_elements))
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True, character_encoding=default_encoding)
    if file_meta._dict:  # what pydicom's reading converts: the first meta element, the transfer syntax
        file_meta[next(iter(file_meta._dict))]  # noqa: B018
    file_meta.get("TransferSyntaxUID")
    dataset = Dataset(elements, parent_encoding=default_encoding)
    encoding: str | list[str] = default_encoding
    if _CHARSET in elements:
        charset = elements[BaseTag(_CHARSET)]
        assert isinstance(charset, RawDataElement)  # every element built here is raw
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    dataset.set_original_encoding(raw.implicit, True, encoding)
    ds = FileDataset("", dataset, data[:128], file_meta, raw.implicit, True)
    ds.set_original_encoding(raw.implicit, True, dataset._character_set)
    return ds
