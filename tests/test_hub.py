"""Hub access (issue 16 items 5, 7, 8): fail fast when the hub cannot be reached, quiet expected load reports,
download advice that fetches only what the course needs. No test touches the network: the "hub" is a
closed local port and the models live in a fake hub cache (``tests/fake_hub.py``)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sevlm_lib.models import hub
from sevlm_lib.models.vision import CLIP_HUB_ID, CLIP_REVISION
from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION
from tests import fake_hub

ROOT = Path(__file__).resolve().parents[1]
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT")
# Counts every HTTP request the hub client makes (each fails as if there were no network), then loads CLIP and
# GPT-2's tokenizer.
SCRIPT = """
import importlib
calls = []
for name in ("httpx2", "httpx"):  # huggingface_hub's HTTP client (httpx2 in 1.x/2.x, httpx before)
    try:
        http = importlib.import_module(name)
    except ImportError:
        continue
    def handle(self, request, _http=http):
        calls.append(str(request.url))
        raise _http.ConnectError("no network in this test", request=request)
    http.HTTPTransport.handle_request = handle
from transformers import AutoTokenizer, CLIPVisionModel
from sevlm_lib.models.hub import load_from_hub
from sevlm_lib.models.vision import CLIP_HUB_ID, CLIP_REVISION
from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION
try:
    load_from_hub(CLIPVisionModel, CLIP_HUB_ID, CLIP_REVISION)
    load_from_hub(AutoTokenizer, GPT2_HUB_ID, GPT2_REVISION)  # looks for optional files: retries if online
    print("loaded")
except OSError as err:
    print("OSError:", err)
print("http requests:", len(calls))
"""


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hub")
    texts = [f"the emotion is {r[2]} because {r[3]}" for r in fake_hub.artemis_rows()] * 2
    fake_hub.build_fake_hub(base / "hub", texts, base / "work")
    return base / "hub"


@pytest.fixture
def fresh_hub_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "_probe_result", {})
    monkeypatch.setattr(hub, "_explained", set())
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------------------ item 8


def test_download_advice_names_only_the_files_the_course_needs() -> None:
    clip = hub.download_command(CLIP_HUB_ID, CLIP_REVISION)
    assert clip == (
        f"hf download {CLIP_HUB_ID} --revision {CLIP_REVISION} --include config.json model.safetensors"
    )
    gpt2 = hub.download_command(GPT2_HUB_ID, GPT2_REVISION)
    for name in ("model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert f" {name}" in gpt2
    assert "pytorch_model.bin" not in gpt2 and "--include" in gpt2


def test_a_model_missing_offline_says_what_to_fetch(tmp_path: Path, fresh_hub_state: None) -> None:
    from transformers import CLIPVisionModel

    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set") as err:
        hub.load_from_hub(CLIPVisionModel, CLIP_HUB_ID, CLIP_REVISION, cache_dir=tmp_path)
    assert hub.download_command(CLIP_HUB_ID, CLIP_REVISION) in str(err.value)


def test_check_gives_the_same_download_advice(tmp_path: Path) -> None:
    from sevlm_lib.cli.check import run_preflight
    from sevlm_lib.settings import Settings

    report = run_preflight(Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache"), "full", hub_cache_dir=tmp_path)
    assert hub.download_command(CLIP_HUB_ID, CLIP_REVISION) in report.item("CLIP ViT-B/16 (image encoder)").how_to_get
    assert hub.download_command(GPT2_HUB_ID, GPT2_REVISION) in report.item("distilgpt2 (decoder + tokenizer)").how_to_get


def test_the_tokenizer_gives_the_same_download_advice(tmp_path: Path) -> None:
    env = {
        **{k: os.environ[k] for k in _KEEP if k in os.environ},
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
    }
    code = "from sevlm_lib.text import load_gpt2_tokenizer\ntry:\n    load_gpt2_tokenizer()\nexcept OSError as e:\n    print(e)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert hub.download_command(GPT2_HUB_ID, GPT2_REVISION) in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------ item 5


def test_the_probe_tells_a_closed_port_from_a_listening_one(
    monkeypatch: pytest.MonkeyPatch, fresh_hub_state: None
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert hub.hub_reachable(timeout=2) is False
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_reachable(timeout=2) is True
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub._probe_target() == ("proxy.invalid", 3128)  # behind a proxy the proxy is what must answer


def _unreachable_hub(cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: os.environ[k] for k in _KEEP if k in os.environ},
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(cache.parent / "hf-home"),
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",  # HF_HUB_OFFLINE deliberately not set
    }
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)


def test_an_unreachable_hub_reads_the_cache_without_waiting_on_the_network(hub_cache: Path) -> None:
    proc = _unreachable_hub(hub_cache)
    assert "loaded" in proc.stdout, proc.stdout + proc.stderr
    assert "http requests: 0" in proc.stdout  # no request, so no retries to wait on
    assert "cannot be reached" in proc.stderr and "HF_HUB_OFFLINE=1" in proc.stderr


def test_an_unreachable_hub_without_the_model_fails_at_once(tmp_path: Path) -> None:
    proc = _unreachable_hub(tmp_path / "empty")
    assert "OSError:" in proc.stdout and "http requests: 0" in proc.stdout, proc.stdout + proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stdout and hub.download_command(CLIP_HUB_ID, CLIP_REVISION) in proc.stdout


# ------------------------------------------------------------------------------------------ item 7


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def load_reports() -> _Records:
    target = logging.getLogger("transformers.modeling_utils")
    handler = _Records()
    target.addHandler(handler)
    yield handler
    target.removeHandler(handler)


def test_expected_load_reports_become_one_line(
    hub_cache: Path, load_reports: _Records, fresh_hub_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import CLIPVisionModel, GPT2LMHeadModel

    hub.load_from_hub(CLIPVisionModel, CLIP_HUB_ID, CLIP_REVISION, cache_dir=hub_cache)
    hub.load_from_hub(GPT2LMHeadModel, GPT2_HUB_ID, GPT2_REVISION, cache_dir=hub_cache, add_cross_attention=True)
    hub.load_from_hub(CLIPVisionModel, CLIP_HUB_ID, CLIP_REVISION, cache_dir=hub_cache)  # explained once
    assert not any("LOAD REPORT" in m for m in load_reports.messages)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert "CLIP's text tower" in lines[0] and lines[0].endswith("as expected")
    assert "new weights (cross-attention" in lines[1]


def test_an_unexpected_load_report_is_still_shown(
    hub_cache: Path, load_reports: _Records, fresh_hub_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import GPT2LMHeadModel

    # a decoder with one layer fewer than the checkpoint: its second layer's weights are left over
    hub.load_from_hub(GPT2LMHeadModel, GPT2_HUB_ID, GPT2_REVISION, cache_dir=hub_cache, n_layer=1)
    assert any("LOAD REPORT" in m and "h.1" in m for m in load_reports.messages)
    assert "as expected" not in capsys.readouterr().err
