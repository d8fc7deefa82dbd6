"""Screening beyond headers: burned-in text in pixels (OCR, redaction), slides, clinical tables."""
