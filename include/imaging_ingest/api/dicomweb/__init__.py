"""DICOMweb (PS3.18) over the published collections: QIDO-RS search and WADO-RS retrieval.

Mounted at ``/dicomweb`` beside the NBIA API, from the same catalog, object store and
access rules. ``router`` wires the endpoints; ``qido`` matches and pages searches;
``wado`` resolves retrievals and checks bytes; ``dicom_json`` and ``metadata`` make and
cache DICOM JSON; ``multipart`` encodes multipart/related answers; ``rendered`` cuts
frames and renders JPEG/PNG; ``frames`` keeps where each frame lies, so that later frame
requests read only that frame.
"""

from imaging_ingest.api.dicomweb.metadata import MetadataCache
from imaging_ingest.api.dicomweb.router import dicomweb_router

__all__ = ["MetadataCache", "dicomweb_router"]
