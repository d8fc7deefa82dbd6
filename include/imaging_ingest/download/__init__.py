"""``imaging-ingest download``: select published objects by index, query or manifest, and fetch them verified.

``selection`` turns what the user asked for (a collection version, series, a query over
the release index, or an s5cmd/AWS CLI manifest) into objects with their checksums;
``transfer`` downloads them in parallel, resumably, checking every byte.
"""
