"""The data layer: formats, NFC, the deterministic split, checksums and every bad input."""

import gzip
import json
import unicodedata
from pathlib import Path

import pytest
import yaml

from eeve_lib.pipeline import corpora, manifest, sources
from eeve_lib.pipeline.corpora import iter_documents, is_validation, load_corpus
from eeve_lib.pipeline.manifest import ManifestEntry
from eeve_lib.pipeline.sources import entry_checksum
from eeve_lib.errors import CorpusError
from eeve_lib.pipeline.profiles import load_profile


def local_entry(path, **kw) -> ManifestEntry:
    return ManifestEntry(name="t", language="ko", kind="local", source="test", revision="1", license="CC0",
                         path=str(path), **kw)


def test_text_tsv_jsonl_and_gzip_are_read(tmp_path):
    (tmp_path / "a.txt").write_text("첫째 줄\n\n둘째 줄\n", encoding="utf-8")
    assert list(iter_documents(local_entry(tmp_path / "a.txt"))) == ["첫째 줄", "둘째 줄"]
    assert list(iter_documents(local_entry(tmp_path / "a.txt", unit="paragraph"))) == ["첫째 줄", "둘째 줄"]
    with gzip.open(tmp_path / "r.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("id\treview\n1\t좋아요\n2\t별로\n")
    assert list(iter_documents(local_entry(tmp_path / "r.tsv.gz", format="tsv", column="review"))) == ["좋아요", "별로"]
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "한국어"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert list(iter_documents(local_entry(tmp_path / "d.jsonl", format="jsonl", field="text"))) == ["한국어"]


def test_nfd_input_is_normalised_to_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "한국어 문장")
    assert nfd != "한국어 문장"
    (tmp_path / "nfd.txt").write_text(nfd + "\n", encoding="utf-8")
    assert list(iter_documents(local_entry(tmp_path / "nfd.txt"))) == ["한국어 문장"]


def test_split_is_deterministic_and_order_free():
    docs = [f"문서 {i}" for i in range(2000)]
    held = [d for d in docs if is_validation(d, 0.1)]
    assert held == [d for d in reversed(docs) if is_validation(d, 0.1)][::-1]
    assert 120 < len(held) < 280


def test_checksum_mismatch_names_the_fix(tmp_path):
    (tmp_path / "a.txt").write_text("글\n", encoding="utf-8")
    digest, size = entry_checksum(local_entry(tmp_path / "a.txt"))
    assert size == len("글\n".encode())
    good = local_entry(tmp_path / "a.txt", sha256=digest)
    assert list(iter_documents(good)) == ["글"]
    bad = local_entry(tmp_path / "a.txt", sha256="0" * 64)
    with pytest.raises(CorpusError, match="Checksum mismatch.*eeve manifest-checksums"):
        list(iter_documents(bad))


def test_missing_path_and_unreadable_file(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list(iter_documents(local_entry(tmp_path / "nope.txt")))
    (tmp_path / "broken.txt.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    with pytest.raises(CorpusError, match="Cannot read"):
        list(iter_documents(local_entry(tmp_path / "broken.txt.gz")))


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    (tmp_path / "latin.txt").write_bytes("좋다\n".encode() + b"caf\xe9\n" + "끝\n".encode())
    with pytest.raises(CorpusError) as e:
        list(iter_documents(local_entry(tmp_path / "latin.txt")))
    assert "latin.txt, line 2" in str(e.value) and "on_decode_error: skip" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1 line"):
        assert list(iter_documents(local_entry(tmp_path / "latin.txt"), on_decode_error="skip")) == ["좋다", "끝"]


def write_manifest(tmp_path, monkeypatch, entries: dict) -> None:
    (tmp_path / "manifests").mkdir(exist_ok=True)
    (tmp_path / "manifests" / "t.yaml").write_text(yaml.safe_dump({"name": "t", "entries": entries}, allow_unicode=True))
    monkeypatch.setattr(manifest, "MANIFEST_DIR", tmp_path / "manifests")


def test_empty_corpus_after_filtering_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "blank.txt").write_text("\n   \n\n", encoding="utf-8")
    entry = {"language": "ko", "kind": "local", "source": "t", "revision": "1", "license": "CC0",
             "path": str(tmp_path / "blank.txt")}
    write_manifest(tmp_path, monkeypatch, {"ko": entry, "en": entry})
    profile = load_profile("tiny", {"data.manifest": "t", "data.korean": ["ko"], "data.english": ["en"]})
    with pytest.raises(CorpusError, match="empty after filtering"):
        load_corpus(profile, "korean")


def test_local_corpora_need_the_data_dir_setting(monkeypatch):
    monkeypatch.delenv("EEVE_DATA_DIR", raising=False)
    with pytest.raises(CorpusError, match="EEVE_DATA_DIR"):
        list(iter_documents(local_entry("nsmc/nsmc_reviews.tsv.gz")))


def test_tiny_profile_corpora_load_with_verified_checksums():
    profile = load_profile("tiny")
    korean = load_corpus(profile, "korean")
    assert korean.train and korean.validation
    assert all(s["sha256_verified"] == s["sha256"] for s in korean.sources)
    assert not set(korean.train) & set(korean.validation)


def test_library_code_never_hardcodes_the_shared_folder():
    root = Path(__file__).resolve().parent.parent / "eeve_lib"
    for path in root.glob("*.py"):
        code = "\n".join(l for l in path.read_text().splitlines() if not l.strip().startswith(("#", "f\"", "\"")))
        assert "shared/data" not in code.replace("../shared/data`", ""), path
