"""The ONNX Runtime backend gives sentence-transformers' vectors, from a local export of the packaged model.

Real parts only: the packaged all-MiniLM-L6-v2, a real torch.onnx export into a temporary cache, real
ONNX Runtime, real NHS FFT comments. Speed is measured in bench/ (docs/benchmarks.md), never here.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.embed.encoder import Embedder

ROOT = Path(__file__).resolve().parent.parent
COMMENTS = ROOT.parent / "shared" / "datasets" / "nhs-fft" / "comments.csv"


def _comments() -> list[str]:
    """A spread of real comments: every 100th row, plus the 10 longest (truncated at 256 tokens)."""
    if not COMMENTS.is_file():
        pytest.skip(f"shared dataset missing: {COMMENTS}")
    with COMMENTS.open(encoding="utf-8", newline="") as f:
        texts = [r["feedback"] for r in csv.DictReader(f) if r["feedback"].strip()]
    longest = sorted(texts, key=len, reverse=True)[:10]
    return texts[::100] + longest


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    cfg = load_config()["embed"]
    cache = tmp_path_factory.mktemp("onnx-cache")
    assert cfg["backend"] == "onnx" and cfg["onnx"]["precision"] == "fp32"  # the default path
    st = Embedder.from_config({**cfg, "backend": "sentence-transformers"})
    ox = Embedder.from_config({**cfg, "backend": "onnx",  # 3 per batch: many length buckets in the tests
                               "onnx": {**cfg["onnx"], "cache_dir": str(cache), "batch_size": 3}})
    return st, ox, cache


def test_onnx_vectors_match_sentence_transformers_on_real_comments(backends):
    st, ox, _ = backends
    texts = _comments()
    a, b = st.encode(texts), ox.encode(texts)
    assert a.shape == b.shape == (len(texts), 384) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.9999, (cosine.min(), texts[int(cosine.argmin())])


def test_onnx_keeps_input_order_and_duplicates(backends):
    _, ox, _ = backends
    texts = ["Short.", "A much longer comment about the waiting times in the clinic and the parking.",
             "Short.", "Staff were kind."]
    out = ox.encode(texts)
    np.testing.assert_array_equal(out[0], out[2])
    single = np.stack([ox.encode([t])[0] for t in texts])
    assert ((out * single).sum(axis=1) >= 0.99999).all()
    assert ox.encode([]).shape == (0, 384)
    from pipeline.embed.onnx_export import OnnxSentenceEncoder
    one_stream = OnnxSentenceEncoder(ox.encoder.folder, ox.encoder.model_file, threads=1, streams=1)
    np.testing.assert_allclose(one_stream.encode(texts, batch_size=1), out, atol=1e-5)


def test_both_backends_report_progress_to_the_callers_one_bar(backends):
    """A caller embedding in chunks draws one bar over all of them: each backend tells it every text once,
    as it goes, and the vectors are those it gives without being asked."""
    texts = _comments()[:60]
    for embedder in (replace(backends[0], batch_size=8), backends[1]):  # 4 batches of 8 at a time, 3 a batch
        told: list[int] = []
        vectors = embedder.encode(texts, progress=told.append)
        assert sum(told) == len(texts) and len(told) > 1 and max(told) < len(texts)
        cosine = (vectors * embedder.encode(texts)).sum(axis=1)
        assert cosine.min() >= 0.9999


def test_backends_share_model_id_tokens_and_limits(backends):
    st, ox, _ = backends
    assert ox.model_id == st.model_id  # same vectors, so one embedding cache
    assert ox.max_tokens == st.max_tokens == 256
    for text in ["Nothing.", "The nurse (Mrs Xxxx) explained everything - twice!", "word " * 400, "Café 東京 😀"]:
        # counted from tokenizer.json alone, as the model's own (transformers) tokenizer counts
        assert ox.count_tokens(text) == st.count_tokens(text) == len(st.encoder.tokenizer(text)["input_ids"])


def test_export_is_cached_by_model_id_and_reused(backends):
    _, ox, cache = backends
    ox.encode(["warm up"])
    exports = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(exports) == 1 and (exports[0] / "model.onnx").is_file()
    meta = json.loads((exports[0] / "export.json").read_text())
    assert meta["model_id"] == ox.model_id and meta["fused_operators"].get("Attention", 0) == 6
    from pipeline.embed.onnx_export import export_model
    before = (exports[0] / "model.onnx").stat().st_mtime_ns
    assert export_model("unused-because-cached", ox.model_id, cache) == exports[0] / "model.onnx"
    assert (exports[0] / "model.onnx").stat().st_mtime_ns == before


def test_unknown_backend_precision_or_smoothing_is_refused_before_any_work():
    cfg = load_config()["embed"]
    with pytest.raises(ValueError, match="embed.backend"):
        Embedder.from_config({**cfg, "backend": "tensorrt"})
    for bad, match in (({"precision": "int4"}, "embed.onnx.precision"), ({"smooth": 1.5}, "embed.onnx.smooth"),
                       ({"smooth": 0}, "embed.onnx.smooth"), ({"fp32_layers": -1}, "embed.onnx.fp32_layers")):
        with pytest.raises(ValueError, match=match):
            Embedder.from_config({**cfg, "backend": "onnx", "onnx": {**cfg["onnx"], **bad}})


def _int8(cache: Path, smooth: float | None = 0.7, fp32_layers: int = 0, **onnx) -> Embedder:
    cfg = load_config()["embed"]
    return Embedder.from_config({**cfg, "backend": "onnx", "onnx": {**cfg["onnx"], "cache_dir": str(cache),
                                                                     "precision": "int8", "smooth": smooth,
                                                                     "fp32_layers": fp32_layers, **onnx}})


def _auto_name(smooth: str = "-smooth0.7") -> str:
    """The int8 recipe's name on this CPU: signed weights with exact int8 dot products, else unsigned."""
    from pipeline.embed.cpu import detect

    return f"int8{smooth}" if detect().exact_int8_dot else f"int8-u8{smooth}"


def test_int8_stays_close_to_fp32_and_has_its_own_model_id(backends):
    """int8 weights: vectors near fp32 on real comments, neighbours kept, cached apart from fp32 vectors.
    The weight type is this CPU's (unsigned where signed products would saturate), so this holds on
    CPUs with and without VNNI (docs/benchmarks.md: the same recipe measured on an AMD EPYC with AVX2 alone)."""
    _, ox, cache = backends
    q8 = _int8(cache, int8_min_cosine=None)  # closeness itself is tested here, whatever the refusal bar
    assert load_config()["embed"]["onnx"]["smooth"] == 0.7
    assert q8.model_id == f"{ox.model_id}#onnx-{_auto_name()}"
    texts = _comments()
    a, b = ox.encode(texts), q8.encode(texts)
    cosine = (a * b).sum(axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.95, (cosine.mean(), cosine.min())
    # the nearest other comment under fp32 is among the 5 nearest under int8 for nearly every comment
    sim_a, sim_b = a @ a.T, b @ b.T
    np.fill_diagonal(sim_a, -2)
    np.fill_diagonal(sim_b, -2)
    top5 = np.argsort(-sim_b, axis=1)[:, :5]
    kept = np.mean([sim_a[i].argmax() in top5[i] for i in range(len(texts))])
    assert kept >= 0.9, kept
    assert Path(q8.encoder.model_file).name == f"model.{_auto_name()}.onnx"
    with pytest.raises(ValueError, match="precision"):
        from pipeline.embed.onnx_export import export_model
        export_model("unused", ox.model_id, cache, precision="int4")


def test_smoothing_keeps_the_fp32_model_and_brings_int8_closer_to_it(backends, tmp_path):
    """Smoothing rescales inputs and weights in opposite directions: the fp32 model computes the same
    vectors; quantised, it stays nearer to fp32 than int8 without smoothing, at its own model id."""
    _, ox, cache = backends
    from pipeline.embed.int8 import calibration_texts, smooth
    from pipeline.embed.onnx_export import OnnxSentenceEncoder

    texts = _comments()
    reference = ox.encode(texts)
    encoder = ox.encoder
    calibration = encoder.token_ids(calibration_texts())
    assert len(calibration) >= 50
    smoothed = smooth(Path(encoder.model_file), tmp_path / "smoothed.onnx", calibration, alpha=0.7)
    same = OnnxSentenceEncoder(encoder.folder, smoothed).encode(texts)
    assert (same * reference).sum(axis=1).min() >= 0.9999
    plain, smoothed_int8 = _int8(cache, smooth=None, int8_min_cosine=None), _int8(cache, int8_min_cosine=None)
    assert plain.model_id != smoothed_int8.model_id
    gap_plain = 1 - (plain.encode(texts) * reference).sum(axis=1).mean()
    gap_smoothed = 1 - (smoothed_int8.encode(texts) * reference).sum(axis=1).mean()
    assert gap_smoothed < 0.75 * gap_plain, (gap_smoothed, gap_plain)
    with pytest.raises(ValueError, match="smooth"):
        smooth(Path(encoder.model_file), tmp_path / "bad.onnx", calibration, alpha=1.5)


def test_fp32_down_projections_bring_int8_nearer_fp32(backends):
    """The product after each feed-forward activation is found from the weights' shape alone (one per
    layer); kept fp32 in every layer, int8 vectors are several times nearer fp32, at their own model id."""
    import onnx

    from pipeline.embed.int8 import down_projections

    _, ox, cache = backends
    names = down_projections(onnx.load(ox.encoder.model_file))
    assert len(names) == 6 and all("/output/dense/" in n and "attention" not in n for n in names), names
    texts = _comments()
    reference = ox.encode(texts)
    smoothed, kept = _int8(cache, int8_min_cosine=None), _int8(cache, fp32_layers=6, int8_min_cosine=None)
    assert kept.model_id == f"{ox.model_id}#onnx-{_auto_name()}-fp32ff6"
    assert Path(kept.encoder.model_file).name == f"model.{_auto_name()}-fp32ff6.onnx"
    gap_smoothed = 1 - (smoothed.encode(texts) * reference).sum(axis=1).mean()
    gap_kept = 1 - (kept.encode(texts) * reference).sum(axis=1).mean()
    assert gap_kept < 0.5 * gap_smoothed, (gap_kept, gap_smoothed)


def test_bench_keeps_each_backends_vectors_apart(backends, tmp_path):
    """The two backends share a model id, but a benchmark result must be made with the vectors of the
    backend it names: the bench cache keeps them apart."""
    from bench.harness import embed_corpus

    st, ox, _ = backends
    texts = ["The staff were kind and listened.", "Parking was impossible.", "Nothing to improve."]
    made = {e.backend: embed_corpus(texts, e, tmp_path) for e in (st, ox)}
    assert not any(cached for _, _, cached in made.values()) and len(list(tmp_path.glob("*.npy"))) == 2
    for e in (st, ox):
        vectors, _, cached = embed_corpus(texts, e, tmp_path)
        assert cached
        np.testing.assert_array_equal(vectors, made[e.backend][0])
        np.testing.assert_array_equal(vectors, e.encode(texts))


def test_int8_weight_type_follows_the_cpus_integer_kernels():
    """Signed weights where int8 products are summed exactly (VNNI, AMX, Arm dot product); unsigned ones
    where the signed kernel saturates (AVX2 alone, AVX-512 without VNNI); a configured type wins."""
    from pipeline.embed.cpu import CpuFeatures, detect, int8_weights_for
    from pipeline.embed.int8 import Int8Recipe

    avx2 = CpuFeatures("AMD EPYC", ("avx2", "fma"))
    skylake = CpuFeatures("Intel Xeon Gold", ("avx2", "fma", "avx512f", "avx512bw"))
    for cpu, weights in ((avx2, "u8"), (skylake, "u8"), (CpuFeatures("Xeon", ("avx2", "avx512_vnni")), "s8"),
                         (CpuFeatures("Core", ("avx2", "avx_vnni")), "s8"), (CpuFeatures("Xeon", ("amx_int8",)), "s8"),
                         (CpuFeatures("Graviton", ("asimd", "asimddp")), "s8")):
        assert int8_weights_for(cpu) == weights, cpu
        assert int8_weights_for(cpu, "s8") == "s8" and int8_weights_for(cpu, "u8") == "u8"
    assert "no VNNI" in avx2.summary and "AMD EPYC" in avx2.summary
    cfg = {**load_config()["embed"]["onnx"], "int8_weights": "auto"}
    assert Int8Recipe.from_config(cfg, avx2).name == "int8-u8-smooth0.7"
    assert Int8Recipe.from_config(cfg, skylake).weights == "u8"
    assert Int8Recipe.from_config({**cfg, "fp32_layers": 6}, CpuFeatures("x", ("avx512_vnni",))).name == \
        "int8-smooth0.7-fp32ff6"  # the names results were made under
    with pytest.raises(ValueError, match="embed.onnx.int8_weights"):
        int8_weights_for(avx2, "int4")
    here = detect()
    assert here.model and all(f in here.as_dict()["flags"] for f in here.flags)


def test_an_emulated_cpu_is_read_from_cpuid_not_from_the_hosts_proc_cpuinfo():
    """Under ``qemu-x86_64 -cpu Haswell`` /proc/cpuinfo still lists the host's AVX-512 and AVX-VNNI, while
    CPUID (numpy's checks, and ONNX Runtime's) answers AVX2 alone: no flag of the host may count then, or
    the saturating signed kernel would be chosen."""
    from pipeline.embed.cpu import combine, int8_weights_for

    known = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
    host = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "sse4_2"}
    native = combine("AMD EPYC", host, host & known, known)
    assert native.flags == ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16")
    emulated = combine("AMD EPYC", host, {"avx2", "fma"}, known)
    assert emulated.flags == ("avx2", "fma") and not emulated.exact_int8_dot
    assert int8_weights_for(emulated) == "u8" and int8_weights_for(native) == "s8"
    alder_lake = combine("Intel Core", {"avx2", "fma", "avx_vnni"}, {"avx2", "fma"}, known)
    assert alder_lake.exact_int8_dot  # AVX-VNNI, which numpy does not check, still counts where they agree
    assert combine("", None, {"avx2"}, known).model  # no /proc/cpuinfo: named after the platform


def test_int8_is_checked_on_this_cpu_and_refused_with_a_reason_below_the_bar(backends):
    """Before first use the int8 export is compared with fp32 on shipped check sentences, on this CPU; the
    figure is kept beside the export (measured once), and a bar above it refuses int8 with a message that
    names the CPU, the figure and what to use instead."""
    from pipeline.embed.int8 import check_texts
    from pipeline.embed.onnx_export import Int8Refused, OnnxSentenceEncoder

    _, ox, cache = backends
    q8 = _int8(cache, int8_min_cosine=None)  # measured whatever the bar
    model_file = Path(q8.encoder.model_file)
    record = model_file.with_name(f"{model_file.stem}.check.json")
    saved = json.loads(record.read_text())
    texts = check_texts()
    assert saved["sentences"] == len(texts) >= 50 and saved["cpu"]["flags"] is not None
    fp32 = OnnxSentenceEncoder(ox.encoder.folder, ox.encoder.model_file).encode(texts)
    direct = (OnnxSentenceEncoder(ox.encoder.folder, model_file).encode(texts) * fp32).sum(axis=1).mean()
    assert abs(saved["mean_cosine"] - direct) < 1e-4
    if saved["mean_cosine"] < 0.995:  # this CPU's recipe is under the default bar: the default refuses it
        with pytest.raises(Int8Refused):
            _int8(cache, int8_min_cosine=0.995).prepare()
    from pipeline.embed.int8 import calibration_texts

    assert not set(texts) & set(calibration_texts())  # checked on sentences smoothing never saw
    before = record.stat().st_mtime_ns
    strict = _int8(cache, int8_min_cosine=0.99999)
    with pytest.raises(Int8Refused) as refused:
        strict.prepare()
    message = str(refused.value)
    for part in ("int8_min_cosine 0.99999", f"{saved['mean_cosine']:.4f}", "precision: fp32", "fp32_layers"):
        assert part in message, message
    assert record.stat().st_mtime_ns == before  # measured once per machine, not per run
    assert not any(t in message for t in texts)  # no text in messages


def test_parallel_first_use_exports_once(tmp_path):
    """Embed tasks that start together on a machine with no export yet (the default backend's first run)
    wait for one export under a lock instead of racing torch.onnx in several threads."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.embed.encoder import resolve_model
    from pipeline.embed.onnx_export import export_model

    folder, model_id = resolve_model("default")
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: export_model(folder, model_id, tmp_path), range(3)))
    exports = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(set(paths)) == 1 and len(exports) == 1 and paths[0].parent == exports[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]  # no half-made export left


def test_a_texts_onnx_vector_does_not_depend_on_its_batch(backends, tmp_path):
    """Issue 18, item 10: the same bits for a text embedded alone, in a batch padded to a much longer text,
    in another order and batch size, or read back from the store's cache (the cache keeps float32 bytes).
    Padding adds exact zeros to the attention sums and the mean pooling, so it changes no bit; measured on
    this backend, and not true of sentence-transformers (PyTorch), whose vectors move in the last bits."""
    from flows.suggest import load_vectors
    from models.store import Store

    _, ox, _ = backends
    comments = _comments()
    texts, longest = comments[:24] + comments[-6:], comments[-7]  # short and long, up to 256 tokens
    alone = np.stack([ox.encode([t])[0] for t in texts])
    padded = np.stack([ox.encode([longest, t])[1] for t in texts])
    reordered = ox.encoder.encode(texts[::-1] + [longest] * 5, batch_size=7)[:len(texts)][::-1]
    np.testing.assert_array_equal(padded, alone)
    np.testing.assert_array_equal(reordered, alone)
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    _, embedded = load_vectors(store, ox, texts[::2])
    warm, embedded_now = load_vectors(store, ox, texts)  # half from the cache, half in new batches
    assert embedded == len(set(texts[::2])) and embedded_now == len(set(texts)) - embedded
    np.testing.assert_array_equal(warm, alone)


def test_a_model_folders_id_follows_its_weights_not_their_size(tmp_path):
    """A fine-tuned model has files of the same sizes as the one it came from: it took that model's vectors."""
    import shutil

    from pipeline.embed.encoder import resolve_model

    folder = tmp_path / "mymodel"
    shutil.copytree(resolve_model("default")[0], folder)
    before = resolve_model(str(folder))[1]
    weights = max(folder.rglob("*.safetensors"), key=lambda p: p.stat().st_size)
    size = weights.stat().st_size
    with weights.open("r+b") as f:  # one byte of the last tensor changed; the file keeps its size
        f.seek(size - 7)
        last = f.read(1)
        f.seek(size - 7)
        f.write(bytes([last[0] ^ 0x01]))
    assert weights.stat().st_size == size
    resolve_model.cache_clear()
    after = resolve_model(str(folder))[1]
    assert after.startswith("mymodel@") and after != before
