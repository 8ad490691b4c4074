"""The optional namer backed by a local generative model (pipeline/themes/model_name.py): an Ollama-like
server the test starts on loopback, and tiny causal LMs the test builds in a tmp folder (no download)."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.config import ConfigError, NameModelSettings, load_config
from pipeline.themes.describe import ThemeDescription
from pipeline.themes.model_name import PROMPT_SHA256, ModelNamer, TransformersBackend, parse_answer

TEXTS = [
    "The waiting times for therapy were far too long, nearly six months.",
    "We waited months on the waiting list before the first therapy session.",
    "Car parking at the hospital costs far too much.",
    "There were no car parking spaces left, so I was late.",
    "The nurses looked after my mother so well on the ward.",
    "They look after you properly, the nurses were kind and patient.",
]


def themes() -> list[ThemeDescription]:
    """Three themes as the describe stage gives them, with extractive names and descriptions."""
    rows = [("waiting times for therapy", ("waiting", "therapy")), ("car parking", ("parking", "car")),
            ("looked after", ("nurses", "ward"))]
    return [ThemeDescription(theme=t, label=label, keywords=kw, keyword_scores=(0.2, 0.1), members=(2 * t, 2 * t + 1),
                             strengths=(1.0, 1.0), centrality=(0.9, 0.8), quotes=(2 * t, 2 * t + 1),
                             description=f"\u201c{TEXTS[2 * t]}\u201d (P0{t})")
            for t, (label, kw) in enumerate(rows)]


class FakeOllama(BaseHTTPRequestHandler):
    """Answers like Ollama: the name is made from the prompt's first keyword; ``garbage`` keywords get
    an answer that is not JSON; every request body is kept in ``requests``."""

    requests: list = []
    garbage: set = set()

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict | None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/api/version":
            return self._send(200, {"version": "0.0.0-test"})
        if self.path == "/api/tags":
            return self._send(200, {"models": [{"name": "tiny:latest", "model": "tiny:latest", "digest": "abc123",
                                                "details": {"family": "test", "parameter_size": "1K"}}]})
        self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        if self.path == "/redirect/api/generate":
            return self._send(307, None, {"Location": "http://192.0.2.1/api/generate"})
        prompt = body["prompt"] if self.path.endswith("/api/generate") else body["messages"][0]["content"]
        first = re.search(r"Keywords: (\w+)", prompt).group(1)
        text = ("Sure! Here you go: the theme is about " + first if first in self.garbage else
                json.dumps({"name": f"Talk of {first}", "criterion": f"Passages where people talk about {first}."}))
        self._send(200, {"response": text, "done": True} if self.path.endswith("/api/generate")
                   else {"message": {"role": "assistant", "content": text}, "done": True})


@pytest.fixture
def ollama():
    FakeOllama.requests, FakeOllama.garbage = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def namer(**settings) -> ModelNamer:
    return ModelNamer.from_config({"backend": "ollama", "model": "tiny", "timeout_s": 10, **settings})


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_names_and_criteria_come_from_a_loopback_server_and_are_recorded(ollama, endpoint):
    renamed = namer(server=ollama, endpoint=endpoint).rename(themes(), TEXTS)
    assert [d.label for d in renamed.descriptions] == ["Talk of waiting", "Talk of parking", "Talk of nurses"]
    assert renamed.descriptions[1].description == "Passages where people talk about parking."
    assert renamed.descriptions[1].keywords == ("parking", "car") and renamed.warning is None
    record = renamed.record
    assert record["named"] == 3 and record["kept_extractive"] == {}
    assert record["prompt"]["sha256"] == PROMPT_SHA256 and "{keywords}" in record["prompt"]["template"]
    assert record["model"] | {"server": None} == {"backend": "ollama", "server": None, "endpoint": f"/api/{endpoint}",
                                                  "model": "tiny", "server_version": "0.0.0-test", "digest": "abc123",
                                                  "details": {"family": "test", "parameter_size": "1K"}}
    path, body = FakeOllama.requests[0]
    assert path == f"/api/{endpoint}" and body["stream"] is False and body["model"] == "tiny"
    assert body["options"]["temperature"] == 0 and body["options"]["seed"] == 42
    prompt = body.get("prompt") or body["messages"][0]["content"]
    assert "Keywords: waiting, therapy" in prompt and f"- {TEXTS[0]}" in prompt


def test_same_inputs_same_prompts_and_names(ollama):
    first = namer(server=ollama).rename(themes(), TEXTS)
    asked = list(FakeOllama.requests)
    second = namer(server=ollama).rename(themes(), TEXTS)
    assert FakeOllama.requests[len(asked):] == asked
    assert first.descriptions == second.descriptions


def test_a_malformed_answer_keeps_that_themes_extractive_name_with_one_warning(ollama):
    FakeOllama.garbage = {"parking"}
    renamed = namer(server=ollama).rename(themes(), TEXTS)
    assert [d.label for d in renamed.descriptions] == ["Talk of waiting", "car parking", "Talk of nurses"]
    assert renamed.descriptions[1] == themes()[1]
    assert renamed.record["named"] == 2 and renamed.record["kept_extractive"] == {"not JSON": 1}
    assert renamed.warning.startswith("describe.name.model: 1 of 3 themes got no usable answer") and "\n" not in renamed.warning


def test_a_server_that_is_not_there_is_asked_once_and_every_theme_keeps_its_name():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    renamed = namer(server=f"http://bob:hunter2@127.0.0.1:{port}").rename(themes(), TEXTS)
    assert renamed.descriptions == themes()
    assert renamed.record["kept_extractive"] == {"server unreachable": 3}
    assert "3 of 3 themes" in renamed.warning
    # a password in the server's address is neither said nor recorded, in the record or in the run's config
    from flows.manifest import recorded_config

    assert "hunter2" not in renamed.warning and f"bob:***@127.0.0.1:{port}" in renamed.warning
    assert "hunter2" not in str(renamed.record)
    config = {"store": {}, "describe": {"name": {"model": {"server": f"http://bob:hunter2@127.0.0.1:{port}/"}}}}
    assert recorded_config(config)["describe"]["name"]["model"]["server"] == f"http://bob:***@127.0.0.1:{port}/"


def test_a_redirect_elsewhere_is_not_followed(ollama):
    renamed = namer(server=ollama + "/redirect").rename(themes(), TEXTS)
    assert renamed.descriptions == themes() and renamed.record["kept_extractive"] == {"HTTP 307": 3}
    assert [p for p, _ in FakeOllama.requests] == ["/redirect/api/generate"]  # asked once, not again per theme


@pytest.mark.parametrize("answer, reason", [
    ("no json here", "not JSON"),
    ('{"name": "Waiting"}', "no name or criterion"),
    ('{"name": "", "criterion": "Passages about waiting."}', "name empty or too long"),
    ('{"name": "one two three four five six seven eight nine", "criterion": "Passages about waiting."}',
     "name empty or too long"),
    ('{"name": "Waiting", "criterion": "Waiting. And more sentences."}', "criterion not one sentence"),
])
def test_malformed_answers_are_refused(answer, reason):
    from pipeline.themes.model_name import AnswerFailed

    with pytest.raises(AnswerFailed, match=reason):
        parse_answer(answer, 8)


def test_an_answer_in_a_code_fence_with_words_around_is_read():
    text = 'Here it is:\n```json\n{"name": " Waiting for therapy. ", "criterion": "Passages on  waits, e.g. for CBT."}\n```'
    assert parse_answer(text, 8) == ("Waiting for therapy", "Passages on waits, e.g. for CBT.")


def test_a_remote_server_is_refused_unless_the_config_allows_it():
    remote = {"describe": {"name": {"model": {"backend": "ollama", "model": "tiny", "server": "http://10.0.0.7:11434"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(overrides=remote)
    message = str(info.value)
    assert message.startswith("describe.name.model.server: 'http://10.0.0.7:11434' is not this machine")
    assert "allow_remote: true" in message and "\n" not in message
    remote["describe"]["name"]["model"]["allow_remote"] = True
    assert load_config(overrides=remote)["describe"]["name"]["model"]["allow_remote"] is True
    for loopback in ("http://localhost:11434", "http://127.0.0.2:8080", "http://[::1]:11434"):
        assert NameModelSettings.of({"backend": "ollama", "model": "m", "server": loopback}).server == loopback


def test_the_cli_refuses_a_remote_server_with_one_line(tmp_path, capsys):
    from flows.commands import run

    config = tmp_path / "remote.yaml"
    config.write_text("describe:\n  name:\n    model: {backend: ollama, model: tiny, server: 'http://example.org'}\n")
    assert run(["suggest", str(tmp_path), "--study", "s", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("themesift: ") and "is not this machine" in err and len(err.splitlines()) == 1


# -- a local transformers model folder -------------------------------------------------------------
ANSWER = '{"name": "Waiting for therapy", "criterion": "Passages where people wait for therapy."}'


def tiny_model(folder: Path, answer: bool, chat: bool = False) -> Path:
    """A 2-layer GPT-2 and a word-level tokenizer, built and saved here (nothing downloaded). With
    ``answer``, its weights are set by hand so that greedy decoding writes ANSWER after any prompt
    (every prompt ends on an unknown word; unknown -> ANSWER -> end); else they are random."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["[UNK]", "[EOS]", "the", "theme", "waiting", "therapy", "car", "parking", "nurses", "ward"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]",
                                   pad_token="[EOS]")
    fast.add_tokens([ANSWER])  # matched whole, decoded as it is
    if chat:  # a chat template that ends on the user's words, as the model's turn begins
        fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    size = len(fast)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=size, n_positions=1024, n_embd=size if answer else 32, n_layer=2, n_head=1,
                        eos_token_id=1, bos_token_id=1, pad_token_id=1, tie_word_embeddings=False)
    model = GPT2LMHeadModel(config).eval()
    if answer:
        unk, eos, said = 0, 1, fast.convert_tokens_to_ids(ANSWER)
        with torch.no_grad():
            for block in model.transformer.h:  # every block adds nothing to the residual stream
                for proj in (block.attn.c_proj, block.mlp.c_proj):
                    proj.weight.zero_()
                    proj.bias.zero_()
            model.transformer.wpe.weight.zero_()
            model.transformer.wte.weight.copy_(torch.eye(size))
            head = torch.zeros(size, size)
            head[said, unk] = head[eos, said] = 1.0  # next token: unknown -> ANSWER -> end
            model.lm_head.weight.copy_(head)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat-template"])
def test_a_local_model_folder_names_the_themes(tmp_path, chat):
    folder = tiny_model(tmp_path / "tiny-answer", answer=True, chat=chat)
    renamed = ModelNamer.from_config({"backend": "transformers", "model": str(folder), "max_new_tokens": 8}).rename(
        themes(), TEXTS)
    assert [d.label for d in renamed.descriptions] == ["Waiting for therapy"] * 3
    assert renamed.descriptions[0].description == "Passages where people wait for therapy."
    model = renamed.record["model"]
    assert model["backend"] == "transformers" and model["folder"] == str(folder.resolve())
    assert model["model_type"] == "gpt2" and len(model["fingerprint"]) == 64 and model["transformers_version"]


def test_a_random_model_folder_answers_the_same_garbage_twice_and_names_fall_back(tmp_path):
    folder = tiny_model(tmp_path / "tiny-random", answer=False)
    cfg = NameModelSettings.of({"backend": "transformers", "model": str(folder), "max_new_tokens": 12})
    backend = TransformersBackend(cfg)
    prompt = "Keywords: waiting, therapy"
    assert backend.complete(prompt) == backend.complete(prompt)  # greedy and seeded: the same answer
    renamed = ModelNamer(cfg).rename(themes(), TEXTS, backend)
    assert renamed.descriptions == themes() and renamed.record["named"] == 0
    assert "3 of 3 themes got no usable answer from the transformers model" in renamed.warning


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a model folder"):
        NameModelSettings.of({"backend": "transformers", "model": str(tmp_path)})


# -- in the suggest flow -----------------------------------------------------------------------------
def test_the_flow_shows_the_models_names_records_the_model_and_a_coders_name_still_wins(prefect_harness, ollama,
                                                                                        tmp_path):
    import shutil

    from prefect.artifacts import Artifact

    from conftest import TRANSCRIPTS, study_config
    from flows.suggest import artifact_key, suggest_flow
    from models.records import Run
    from models.review import decide
    from models.store import Store
    from review_helpers import keys_and_outliers
    from web.views import load_view

    folder = tmp_path / "named"
    folder.mkdir()
    for name in ("P01.txt", "P02.txt", "P03.docx", "P04.vtt", "P05.txt", "P06.docx"):
        shutil.copy(TRANSCRIPTS / name, folder / name)
    cfg = study_config(tmp_path / "ws", describe={"name": {"model": {"backend": "ollama", "model": "tiny",
                                                                     "server": ollama}}})
    first = suggest_flow(paths=[str(folder)], study="named", config=cfg)
    assert first["status"] == "completed" and not [w for w in first["warnings"] if "describe.name" in w], first
    store = Store.from_config(cfg["store"])
    with store.sessions() as session:
        manifest = session.get(Run, first["run_id"]).manifest
        view = load_view(session, "named")
    record = manifest["name_model"]
    assert record["model"]["server_version"] == "0.0.0-test" and record["prompt"]["sha256"] == PROMPT_SHA256
    assert record["named"] == record["themes"] > 0
    rows = view.rows()
    assert all(r.label.startswith("Talk of ") and r.description.startswith("Passages where people talk about ")
               for r in rows)
    table = json.loads(Artifact.get(artifact_key("named")).data)  # the Prefect run page shows them too
    assert [(t["label"], t["description"]) for t in table] == [(r.label, r.description) for r in rows]

    keys, _, _ = keys_and_outliers(store, "named")
    decide(store, "named", "amira", {"action": "confirm", "theme_key": keys[0], "name": "Our own name",
                                     "definition": "d"})
    again = suggest_flow(paths=[str(folder)], study="named", config=cfg, force=True)
    assert again["status"] == "completed"
    with store.sessions() as session:
        view = load_view(session, "named")
    assert view.title(keys[0]) == "Our own name"
    kept = next(r for r in view.rows() if r.key == keys[0])
    assert kept.label == "Our own name"  # the carried theme takes the coder's name, not the model's


def test_bench_names_measures_the_model_namer_the_config_names(ollama, tmp_path, monkeypatch):
    """``python -m bench names --config`` with the model namer on scores its names beside the extractive
    ones they replaced, and records the model and the prompt."""
    from test_bench import three_banking_codes

    data = three_banking_codes(tmp_path)
    monkeypatch.setenv("THEMESIFT_BENCH_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "local-model.yaml"
    config.write_text(f"describe:\n  name:\n    model: {{backend: ollama, model: tiny, server: '{ollama}'}}\n")
    from bench.__main__ import main

    out, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    assert main(["names", "--data", str(data), "--text-col", "text", "--label-col", "category", "--name", "bank3",
                 "--config", str(config), "--out", str(out), "--doc", str(doc), "--seeds", "42", "--no-peer"]) == 0
    result = json.loads((out / "names-bank3-local-model.json").read_text())
    assert set(result["methods"]) == {"name", "keyword_label", "extractive_name"}
    assert result["name_model"]["model"]["server_version"] == "0.0.0-test"
    assert all(t["name"].startswith("Talk of ") and t["extractive_name"] for t in result["table"])
    text = doc.read_text()
    assert "Themesift's name by the local model" in text and "tiny on http://127.0.0.1:" in text
