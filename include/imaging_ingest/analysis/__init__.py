"""Analysis results on published data: segmentations, structured reports and RT structures made on published series.

They reference the published (already de-identified) UIDs. ``references`` finds those
references, resolves them against the catalog, keeps the ones that resolve (they are not
remapped a second time) and quarantines a file whose references resolve nowhere;
``sources`` names the source collection versions a derived collection cites.
"""
