"""The leak scan's fast path (raw elements) gives the verdicts of its pydicom path, leak for leak.

``find_leaks`` reads both files as raw elements and only parses them with pydicom on a hit;
``leaks._reference_leaks`` is the pydicom reading the verifier always made. Over the synthetic
corpus de-identified under several option sets, over outputs with PHI planted on purpose,
and over encodings the fast path reads differently (implicit VR) or not at all, the two must
return the same needles, the same text findings and the same list of leaks; and a planted leak
must still be caught.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Deidentifier
from imaging_ingest.verify import leaks
from imaging_ingest.verify.leaks import Leak, find_leaks, find_leaks_in, identifying_values
from imaging_ingest.verify.needles import IDENTIFYING_KEYWORDS, raw_identifying_values
from imaging_ingest.verify.raw_walk import code_values, raw_strings, read, walk
from imaging_ingest.verify.text import _TEXT_VRS, raw_text_findings, text_findings
from imaging_ingest.verify.values import element_strings

from .deid_helpers import OPTION_SETS, PSEUDONYM, SECRET, ct_dataset, patient, resolve, write


def _corpus(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[128:132] == b"DICM")


def _deid(src: Path, dst: Path, *options: DeidOption) -> Path:
    Deidentifier(resolve(*options), SECRET).deidentify_file(src, dst, patient())
    return dst


def _same_verdicts(src: Path, out: Path, options: list[str] | None = None, pseudonym: str | None = PSEUDONYM,
                   kept: tuple[str, ...] = ()) -> list[Leak]:
    """Both paths' leaks for one pair, asserted equal, the fast path asserted taken; the leaks."""
    source, output = src.read_bytes(), out.read_bytes()
    fast = leaks._fast_leaks(source, output, options, pseudonym, kept)
    assert fast is not None, f"{src.name}: off the fast path"
    assert fast == leaks._reference_leaks(source, output, options, pseudonym, kept), src.name
    assert find_leaks(src, out, options, pseudonym, kept) == fast
    return fast


def _same_reading(path: Path, *, force: bool) -> None:
    """Raw and pydicom readings of one file: same elements, VRs and strings; same needles; same text findings."""
    data = path.read_bytes()
    ds = dcmread(path, stop_before_pixels=True, force=force)
    raw = read(data)
    assert raw is not None, path.name
    theirs = [(int(tag), vr, element_strings(elem)) for _item, tag, elem, vr in leaks._walk(ds)]
    mine = [(tag, vr, raw_strings(elem)) for _item, tag, elem, vr in walk(raw.dataset, raw.implicit)]
    assert [t[:2] for t in mine] == [t[:2] for t in theirs], path.name
    # pydicom converts the data set's Specific Character Set as it reads (str of the value, not
    # the raw reading); no rule reads it: not a needle's keyword, not a text VR of the text check
    differ = {t[0] for t, m in zip(theirs, mine, strict=True) if t != m}
    assert differ <= {0x00080005}, (path.name, [hex(t) for t in differ])
    assert "SpecificCharacterSet" not in IDENTIFYING_KEYWORDS and "CS" not in _TEXT_VRS
    assert raw_identifying_values(raw) == identifying_values(ds), path.name  # values, sources, kinds, keywords, slots
    for retained in (False, True):
        assert raw_text_findings(raw, institution_retained=retained) == text_findings(ds, institution_retained=retained)
    assert code_values(raw, 0x00120064) == leaks._retained_codes(ds), path.name


@pytest.fixture(scope="module")
def deidentified(synth_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, Path]]:
    """(option set, source, output) for every DICOM file of the synthetic corpus under every option set."""
    out = tmp_path_factory.mktemp("fast-path")
    return [(name, src, _deid(src, out / name / f"{i}.dcm", *options))
            for name, options in OPTION_SETS.items() for i, src in enumerate(_corpus(synth_cache))]


def test_raw_and_pydicom_readings_agree_on_every_file(deidentified: list[tuple[str, Path, Path]]) -> None:
    assert len(deidentified) >= 4 * 20
    for src in {src for _, src, _ in deidentified}:
        _same_reading(src, force=True)
    for _, _, out in deidentified:
        _same_reading(out, force=False)


def test_the_corpus_gets_the_same_verdicts_on_both_paths(deidentified: list[tuple[str, Path, Path]]) -> None:
    hits = 0
    for name, src, out in deidentified:
        assert _same_verdicts(src, out) == [], (name, src.name)
        assert _same_verdicts(src, out, [o.value for o in OPTION_SETS[name]]) == []
        hits += len(_same_verdicts(src, out, options=[]))  # a caller saying less: kept values are hits, parsed lazily
    assert hits  # the retain-all outputs keep UIDs and dates: the hit path ran


def _plant(out: Path, dst: Path, change: Callable[[Dataset], object]) -> Path:
    ds = dcmread(out)
    change(ds)
    ds.save_as(dst)
    return dst


def test_planted_phi_is_caught_the_same_way(deidentified: list[tuple[str, Path, Path]], tmp_path: Path) -> None:
    name, src, out = next(d for d in deidentified if d[0] == "default" and "_CT_" in f"_{d[1].parent.name}_")
    original = dcmread(src)
    item = Dataset()
    item.ReferencedSOPInstanceUID = original.SOPInstanceUID
    plants = {
        "(0020,4000) ImageComments": lambda ds: setattr(ds, "ImageComments", f"see {original.PatientName}"),
        "(0008,1070) OperatorsName": lambda ds: setattr(ds, "OperatorsName", original.PatientName),
        "(0008,1155) ReferencedSOPInstanceUID": lambda ds: setattr(ds, "ReferencedImageSequence", Sequence([item])),
        "(0032,4000) StudyComments": lambda ds: setattr(ds, "StudyComments", "Discussed with Dr. Anselm Quist"),
    }
    for where, change in plants.items():
        found = _same_verdicts(src, _plant(out, tmp_path / "planted.dcm", change))
        assert where in {leak.found_in for leak in found}, (where, found)
        assert all(str(original.PatientName) not in leak.reason for leak in found)


def test_private_values_and_pixel_data_get_the_same_verdicts(tmp_path: Path) -> None:
    ds = ct_dataset(pixels=False)
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0D, "CS", "QXDIRECTIONAL")  # safe private, kept as it is under Retain Safe Private
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "call QUANDT at home")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xfe\x00\x16ZYGMUNTOWICZ XAVIERA\xff\xd9"])  # a JPEG comment
    ds["PixelData"].VR = "OB"
    src = write(ds, tmp_path / "src.dcm", JPEGBaseline8Bit)
    out = _deid(src, tmp_path / "out.dcm", DeidOption.RETAIN_SAFE_PRIVATE, DeidOption.RETAIN_UIDS)
    found = _same_verdicts(src, out)
    assert "pixel data or unparsed bytes" in {leak.found_in for leak in found}
    assert {leak.source for leak in _same_verdicts(src, out, options=[])} >= {"(0019,100D) private"}
    moved = _plant(out, tmp_path / "moved.dcm", lambda d: setattr(d, "ImageComments", "QXDIRECTIONAL"))
    assert "(0020,4000) ImageComments" in {leak.found_in for leak in _same_verdicts(src, moved)}


def test_an_implicit_vr_source_gets_the_same_verdicts(tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.ReferencedStudySequence = Sequence([Dataset()])
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.9.7777.5.5.5"
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "call QUANDT at home")
    src = write(ds, tmp_path / "src.dcm", ImplicitVRLittleEndian)
    raw = read(src.read_bytes())
    assert raw is not None and raw.implicit
    _same_reading(src, force=True)
    out = _deid(src, tmp_path / "out.dcm")
    assert _same_verdicts(src, out) == []
    leaky = _plant(out, tmp_path / "leaky.dcm", lambda d: setattr(d, "PatientComments", "call QUANDT at home"))
    assert "(0010,4000) PatientComments" in {leak.found_in for leak in _same_verdicts(src, leaky)}


def test_a_file_off_the_fast_path_is_read_with_pydicom(tmp_path: Path) -> None:
    src = write(ct_dataset(), tmp_path / "src.dcm")
    out = _deid(src, tmp_path / "out.dcm")
    leaky = _plant(out, tmp_path / "leaky.dcm", lambda d: setattr(d, "ImageComments", "ZYGMUNTOWICZ"))
    bare = tmp_path / "bare.dcm"  # no preamble, no DICM: pydicom reads it (force), the bytes reader does not
    bare.write_bytes(src.read_bytes()[132:])
    assert read(bare.read_bytes()) is None
    assert leaks._fast_leaks(bare.read_bytes(), leaky.read_bytes(), None, None, ()) is None
    found = find_leaks_in(bare.read_bytes(), leaky.read_bytes())
    assert found == leaks._reference_leaks(bare.read_bytes(), leaky.read_bytes(), None, None, ())
    assert "(0020,4000) ImageComments" in {leak.found_in for leak in found}


def test_titles_and_codes_pydicom_converts_read_the_same(tmp_path: Path) -> None:
    src = write(ct_dataset(), tmp_path / "src.dcm")
    out = _deid(src, tmp_path / "out.dcm", DeidOption.RETAIN_UIDS)
    titles = [" QX SITE ", "QXSITEPACS\\QXOTHER", "QXSITE\x00", ""]
    codes = [" 113110", "113110\\113106", "113110 ", "113110\x00", "", "ＱＸ"]
    for n, (title, code) in enumerate(zip(titles, codes, strict=False)):
        def odd(ds: Dataset, title: str = title, code: str = code) -> None:
            ds.file_meta.SourceApplicationEntityTitle = title
            ds.file_meta.SendingApplicationEntityTitle = title
            if "DeidentificationMethodCodeSequence" in ds:  # the outputs' record of the options applied
                ds.DeidentificationMethodCodeSequence[0].CodeValue = code
        _same_reading(_plant(src, tmp_path / f"src{n}.dcm", odd), force=True)
        planted = _plant(out, tmp_path / f"out{n}.dcm", odd)
        _same_reading(planted, force=False)
        _same_verdicts(src, planted)
        _same_verdicts(src, planted, options=[])


def test_a_large_source_is_read_up_to_its_pixel_data(deidentified: list[tuple[str, Path, Path]], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name, src, out = next(d for d in deidentified if d[0] == "basic" and "_CT_" in f"_{d[1].parent.name}_")
    leaky = _plant(out, tmp_path / "leaky.dcm", lambda d: setattr(d, "ImageComments", str(dcmread(src).PatientName)))
    header_end = read(src.read_bytes()).header_end  # type: ignore[union-attr]
    whole = src.read_bytes()
    for prefix in (header_end - 1, header_end, header_end + 1, header_end + 4096, len(whole), len(whole) + 1):
        monkeypatch.setattr(leaks, "_SOURCE_PREFIX", prefix)
        data = leaks._source_bytes(src)
        # the header and the pixel data element's start in the prefix: the header; else all of it
        assert data == (whole[:header_end] if header_end + 8 <= prefix <= len(whole) else whole), prefix
        for output in (out, leaky):
            expected = leaks._reference_leaks(src.read_bytes(), output.read_bytes(), None, PSEUDONYM, ())
            assert find_leaks(src, output, pseudonym=PSEUDONYM) == expected
    assert expected and expected[0].found_in == "(0020,4000) ImageComments"


def _printable_runs_plainly(data: bytes) -> bytes:
    """The runs as the verifier first found them (translate, then search for runs)."""
    run = b"\x01" * leaks._PIXEL_SAFE_LENGTH
    classes = data.translate(bytes(1 if 0x20 <= b < 0x7F else 0 for b in range(256)))
    runs, start = [], classes.find(run)
    while start != -1:
        end = classes.find(b"\x00", start)
        end = len(data) if end == -1 else end
        runs.append(data[start:end])
        start = classes.find(run, end)
    return b"\x00".join(runs).lower()


def test_printable_runs_are_found_as_before(synth_cache: Path) -> None:
    rnd = random.Random(7)
    samples = [os.urandom(1 << 16), b"", b"ABCDE", b"ABCDEF", b"\x00ABCDEF", b"ABCDEF\x00", b"Hello World\x7fxyz123456"]
    for _ in range(2000):
        alphabet = rnd.choice([b"\x00A", b"\x1f\x20aZ~\x7f", bytes(range(256)), b"AB\x00"])
        samples.append(bytes(rnd.choice(alphabet) for _ in range(rnd.choice([5, 6, 7, 13, 64]))))
    samples += [path.read_bytes() for path in _corpus(synth_cache)[:10]]
    for data in samples:
        assert leaks._printable_runs(data) == _printable_runs_plainly(data), data[:40]
