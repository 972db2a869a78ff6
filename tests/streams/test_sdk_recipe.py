"""The openai SDK recipe (docs/resumable_openai.py): a streamed chat completion cut in the
middle of the network path, resumed, joins into exactly the uninterrupted answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import openai

from relay.mock.generate import completion_text

from ..conftest import RelayFactory
from ..support import LoopThread, scrape
from ..support.cutter import Cutter

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "resumable_openai.py"


def _recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("resumable_openai", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cut_stream_resumes_and_joins_into_the_whole_answer(
        lt: LoopThread, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_delay_ms=20)
    cutter: Cutter = lt.run(Cutter(relay.port).start())
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{cutter.port}/v1", api_key="unused",
                               max_retries=0)
        text = []
        chunks = _recipe().resumable_chat(client, model="mock-gpt", max_tokens=30,
                                          messages=[{"role": "user", "content": "hi"}])
        for i, chunk in enumerate(chunks):
            if i == 8:
                lt.call(cutter.cut)  # the network path drops, mid-stream
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
        assert "".join(text) == completion_text(30)
        assert scrape(relay.port)["relay_resumable_streams_resumed_total"] == 1
    finally:
        lt.call(cutter.close)
