import pytest

from fusechat import FusechatError
from fusechat.catalog import prepare
from fusechat.models import resolve


@pytest.mark.real
def test_catalog_names_resolve_to_the_verified_gguf():
    assert resolve("smollm2-135m-instruct").gguf_path() == prepare("smollm2-135m-instruct")


def test_references_resolve_by_kind(tmp_path, tiny_model_dir):
    assert resolve(str(tiny_model_dir)).kind == "hf-folder"
    assert resolve(str(tiny_model_dir)).hf_path() == str(tiny_model_dir)
    assert resolve("smollm2-135m-instruct").kind == "catalog"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).kind == "gguf"
    assert resolve("someorg/somemodel").kind == "hub"
    with pytest.raises(FusechatError, match="no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(FusechatError, match="GGUF file not found"):
        resolve(str(tmp_path / "missing.gguf"))
    with pytest.raises(FusechatError, match="needs a GGUF"):
        resolve(str(tiny_model_dir)).gguf_path()


def test_unreachable_hub_id_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FusechatError) as info:
        resolve("fusechat-test/no-such-model-xyz").hf_path()
    message = str(info.value)
    assert "fusechat-test/no-such-model-xyz" in message and "hub" in message and "\n" not in message
