import pytest

from fusechat import FusechatError, models


def test_catalog_model_is_verified_and_cached():
    path = models.prepare("smollm2-135m-instruct")
    assert path.stat().st_size == models.CATALOG["smollm2-135m-instruct"].size
    assert models.is_prepared("smollm2-135m-instruct")
    assert models.resolve("smollm2-135m-instruct").gguf_path() == path


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "part1.bin").write_bytes(b"abc")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    fake = models.CatalogModel("fake", "test", ("fakepkg==1",), ("fakepkg/part1.bin",), 3, "0" * 64)
    monkeypatch.setitem(models.CATALOG, "fake", fake)
    with pytest.raises(FusechatError, match="does not match the catalog"):
        models.prepare("fake")
    assert not (tmp_path / "cache" / "gguf" / "fake.gguf").exists()


def test_references_resolve_by_kind(tmp_path, tiny_model_dir):
    assert models.resolve(str(tiny_model_dir)).kind == "hf-folder"
    assert models.resolve(str(tiny_model_dir)).hf_path() == str(tiny_model_dir)
    gguf = models.prepare("smollm2-135m-instruct")
    assert models.resolve(str(gguf)).kind == "gguf"
    assert models.resolve("someorg/somemodel").kind == "hub"
    with pytest.raises(FusechatError, match="no config.json"):
        models.resolve(str(tmp_path))
    with pytest.raises(FusechatError, match="GGUF file not found"):
        models.resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(FusechatError, match="needs a GGUF"):
        models.resolve(str(tiny_model_dir)).gguf_path()


def test_unreachable_hub_id_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FusechatError) as info:
        models.resolve("fusechat-test/no-such-model-xyz").hf_path()
    message = str(info.value)
    assert "fusechat-test/no-such-model-xyz" in message and "hub" in message and "\n" not in message
