"""``python -m bench``: quality, speed and growth benchmarks; results to docs/bench/ and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench import report
from bench.machine import describe_run


def _config(args: argparse.Namespace) -> dict:
    from pipeline.config import load_config

    overrides: dict = {}
    if getattr(args, "backend", None):
        overrides["embed"] = {"backend": args.backend}
    if getattr(args, "precision", None):
        overrides.setdefault("embed", {}).setdefault("onnx", {})["precision"] = args.precision
    if getattr(args, "fp32_layers", None) is not None:
        overrides.setdefault("embed", {}).setdefault("onnx", {})["fp32_layers"] = args.fp32_layers
    return load_config(getattr(args, "config", None), overrides or None)


def _save(result: dict, args: argparse.Namespace, stem: str) -> int:
    """Write ``result`` to ``--out`` as ``stem``.json and, unless ``--no-report``, rebuild the Markdown summary."""
    from bench.harness import write_json

    print(f"wrote {write_json(result, args.out, stem)}")
    if not args.no_report:
        print(f"wrote {report.write(args.out, args.doc)}")
    return 0


def _corpus(args: argparse.Namespace, config: dict, kind: str):
    """The labelled corpus ``--preset`` or ``--data`` names, and the result's file stem; None if neither."""
    from bench import datasets

    if getattr(args, "preset", None):
        corpus = datasets.load_preset(args.preset, config, args.limit)
        stem = f"{kind}-{args.preset}"
    else:
        if not (args.data and args.text_col and (args.label_col or args.indicator_col)):
            print(f"bench {kind}: give --preset NAME, or --data FILE --text-col C and --label-col C or "
                  "--indicator-col C ...", file=sys.stderr)
            return None, ""
        if args.label_col and args.indicator_col:
            print(f"bench {kind}: give --label-col or --indicator-col, not both", file=sys.stderr)
            return None, ""
        spec = datasets.CsvSpec(str(args.data), args.text_col, args.label_col, args.case_col, args.multi_label_sep,
                                tuple(args.exclude_label), indicator_cols=tuple(args.indicator_col))
        corpus = datasets.load_csv(spec, config, args.name or Path(args.data).stem, args.limit)
        stem = f"{kind}-{args.name or Path(args.data).stem}"
    return corpus, stem + (f"-first{args.limit}" if args.limit else "")


def cmd_review(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.learning import learning_curve

    config = _config(args)
    corpus, stem = _corpus(args, config, "learn")
    if corpus is None:
        return 2
    result = {**describe_run(list(argv)), **learning_curve(corpus, config, tuple(args.budgets), tuple(args.seeds))}
    return _save(result, args, stem)


def cmd_adapt(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.adapt import adapt_benchmark

    config = _config(args)
    corpus, stem = _corpus(args, config, "adapt")
    if corpus is None:
        return 2
    result = {**describe_run(list(argv)), **adapt_benchmark(corpus, config, tuple(args.sizes), args.draws,
                                                            tuple(args.epochs) if args.epochs else None)}
    return _save(result, args, _with_config(result, args, stem))


def cmd_quality(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.harness import quality

    config = _config(args)
    corpus, stem = _corpus(args, config, "quality")
    if corpus is None:
        return 2
    if config["embed"]["backend"] == "sentence-transformers":
        stem += "-st"
        corpus.name += " (sentence-transformers vectors)"
    elif int8 := _int8_tag(config):
        stem += int8[0]
        corpus.name += int8[1]
    header = describe_run(list(argv))
    result = {**header, **quality(corpus, config, peer=not args.no_peer, seeds=tuple(args.seeds))}
    stem = _with_config(result, args, stem)
    _summary(result)
    return _save(result, args, stem)


def cmd_small(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.small import small_studies

    config = _config(args)
    corpora, stem = [], "small-studies"
    if args.data:  # a labelled CSV of the user's instead of the presets
        corpus, data_stem = _corpus(args, config, "small")
        if corpus is None:
            return 2
        corpora, stem = [corpus], data_stem
    result = {**describe_run(list(argv)), **small_studies(config, args.presets, args.sizes, args.interviews,
                                                          args.draws, corpora)}
    if not result["rows"]:
        print("bench small: no row: every size asked is above the corpus's segments (see above); give smaller "
              "--sizes", file=sys.stderr)
        return 2
    return _save(result, args, stem + (f"-{args.draws}draws" if args.draws != 5 else ""))


def cmd_names(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.names import names_benchmark

    config = _config(args)
    corpus, stem = _corpus(args, config, "names")
    if corpus is None:
        return 2
    result = {**describe_run(list(argv)), **names_benchmark(corpus, config, tuple(args.seeds), not args.no_peer)}
    stem = _with_config(result, args, stem)
    print(f"{result['dataset']}: themes with purity >= {result['min_purity']}")
    for name, m in result["methods"].items():
        print(f"  {name:14s} hit@1 {m['hit1']:.3f}  hit@3 {m['hit3']:.3f}  usable themes {m['n_usable']:.1f}")
    return _save(result, args, stem)


def _int8_fp32_layers(config: dict) -> int | None:
    """``embed.onnx.fp32_layers`` of a run with ONNX int8 vectors; None for any other vectors."""
    onnx = config["embed"]["onnx"]
    if config["embed"]["backend"] != "onnx" or onnx["precision"] != "int8":
        return None
    return int(onnx["fp32_layers"])


def _int8_tag(config: dict) -> tuple[str, str] | None:
    """Stem suffix and dataset label of a result made with ONNX int8 vectors (None for any other vectors)."""
    layers = _int8_fp32_layers(config)
    if layers is None:
        return None
    if layers:
        return f"-int8-fp32ff{layers}", f" (ONNX int8 vectors, fp32 feed-forward down-projection in {layers} layers)"
    return "-int8", " (ONNX int8 vectors)"


def _with_config(result: dict, args: argparse.Namespace, stem: str) -> str:
    """A result made with ``--config``: its dataset marked, the file's text kept; the stem to save it as."""
    if not args.config:
        return stem
    result["dataset"] += f" (config {args.config.name})"
    result["config_file"] = {"path": str(args.config), "text": args.config.read_text(encoding="utf-8")}
    return f"{stem}-{args.config.stem}"


def _summary(result: dict) -> None:
    methods = result["methods"]
    keys = ["mean_best_f1", "recovered_share", "top5_precision", "top10_precision", "top10_strict_precision",
            "ari_all", "nmi_all", "ari_assigned", "nmi_assigned", "outlier_share", "n_themes", "seconds"]
    print(f"{result['dataset']}: {result['n_units']} units, {result['n_codes']} codes")
    print(f"{'figure':26s}" + "".join(f"{m:>12s}" for m in methods))
    for k in keys:
        print(f"{k:26s}" + "".join(f"{report._fmt(methods[m][k], k):>12s}" for m in methods))


def _cpu_kind() -> str:
    """This CPU's widest integer SIMD flag as a file-name tag (amx-int8, avx512-vnni, avx2...): the speed and
    closeness results keep one file per kind of CPU, so one CPU's result never overwrites another's."""
    from pipeline.embed.cpu import detect

    return detect().widest.replace("_", "-")


def cmd_embed_speed(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.speed import embed_speed

    result = {**describe_run(list(argv)), **embed_speed(_config(args), args.limit, args.rounds,
                                                         int8_fp32_layers=tuple(args.int8_fp32_layers or ()))}
    return _save(result, args, f"speed-embed-{_cpu_kind()}" + (f"-first{args.limit}" if args.limit else ""))


def cmd_int8_closeness(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.closeness import int8_closeness

    result = {**describe_run(list(argv)), **int8_closeness(_config(args), args.step)}
    return _save(result, args, f"int8-closeness-{_cpu_kind()}{'-emulated' if args.emulated else ''}")


def cmd_flow_speed(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.speed import flow_speed

    config = _config(args)
    layers = _int8_fp32_layers(config)  # the all-int8 flow is the canonical result and carries no tag
    result = {**describe_run(list(argv)), **flow_speed(config, args.limit, not args.no_peer, args.rounds)}
    return _save(result, args, f"speed-flow-{_cpu_kind()}" + (f"-fp32ff{layers}" if layers else "")
                 + (f"-first{args.limit}" if args.limit else ""))


def cmd_growth(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.speed import growth

    result = {**describe_run(list(argv)), **growth(_config(args), args.sizes, args.embed_sizes)}
    return _save(result, args, "speed-growth")


def cmd_growth_point(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.speed import growth_point

    growth_point(_config(args), args.n, args.embed, Path(args.json))
    return 0


def cmd_review_loop(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.coder import simulate

    config = _config(args)
    result = {**describe_run(list(argv)), **simulate(args.preset, config, tuple(args.k), tuple(args.seeds))}
    stem = "review-" + args.preset
    if config["embed"]["backend"] != "sentence-transformers":  # the default backend's curve is the headline
        suffix, label = _int8_tag(config) or ("", " (ONNX vectors)")
        stem += "-onnx" + suffix
        result["dataset"] += label
    return _save(result, args, _with_config(result, args, stem))


def cmd_qualcoder(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.harness import write_json
    from bench.qualcoder_check import print_table, qualcoder_check

    if not (args.qualcoder_src / "qualcoder" / "refi.py").is_file():
        print(f"themesift: --qualcoder-src {args.qualcoder_src}: no qualcoder/refi.py there; give the src/ folder "
              "of a QualCoder checkout (github.com/ccbogel/QualCoder)", file=sys.stderr)
        return 2
    result = {**describe_run(list(argv)), **qualcoder_check(args.qualcoder_src.resolve(), args.python,
                                                            args.qualcoder_commit)}
    print_table(result)
    print(f"wrote {write_json(result, args.out, 'qualcoder-check')}")
    return 0 if all(r["n_lost"] == 0 for what, r in result["rows"].items() if what != "code colours") else 1


def cmd_page_speed(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.harness import write_json
    from bench.pages import page_speed, print_table
    from models.store import Store

    store = Store.from_config(_config(args)["store"])
    result = {**describe_run(list(argv)), **page_speed(store.url, args.study, args.rounds, args.word)}
    print_table(result)
    print(f"wrote {write_json(result, args.out, 'pages-' + (args.name or args.study))}")
    return 0


def cmd_repeat(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Exit status 1 when the cold and the warm run's themes differ (the result is saved either way)."""
    from bench.repeat import repeat, summary

    if args.prime == "run" and args.warm < 1:
        print("bench repeat: --warm must be at least 1", file=sys.stderr)
        return 2
    result = {**describe_run(list(argv)), **repeat(args.data, args.text_col, args.warm, args.config, args.prime,
                                                  args.keep)}
    print(summary(result))
    status = _save(result, args, f"repeat-{args.name or args.data.stem}")
    return status or (0 if result["comparison"]["themes_identical"] else 1)


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    print(f"wrote {report.write(args.out, args.doc)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML overriding configs/default.yaml (as themesift --config)")
        p.add_argument("--backend", choices=("sentence-transformers", "onnx"), help="embed.backend for this run")
        p.add_argument("--precision", choices=("fp32", "int8"), help="embed.onnx.precision for this run")
        p.add_argument("--fp32-layers", type=int, help="embed.onnx.fp32_layers for this run (int8 only)")
        p.add_argument("--out", type=Path, default=report.RESULTS, help="folder for JSON results (docs/bench)")
        p.add_argument("--doc", type=Path, default=report.DOC, help="Markdown summary to rebuild (docs/benchmarks.md)")
        p.add_argument("--no-report", action="store_true", help="do not rebuild the Markdown summary")

    def labelled(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", help="nhs-fft-subcategory | nhs-fft-label | banking77 | example-study; held out: "
                                        "nhs-fft-v6 | banking77-train")
        p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46],
                       help="UMAP seeds, the same for both tools; figures are averaged over them")
        labelled_csv(p)

    def labelled_csv(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, help="any labelled CSV")
        p.add_argument("--text-col")
        p.add_argument("--label-col")
        p.add_argument("--case-col", help="respondent column (default: each row is its own case)")
        p.add_argument("--multi-label-sep", help="separator between several labels in the label column")
        p.add_argument("--indicator-col", action="append", default=[],
                       help="instead of --label-col: a column per code, set on rows carrying it (a number other "
                            "than 0, or a word other than no/false/n/a; empty is not set); repeat it for each code")
        p.add_argument("--exclude-label", action="append", default=[], help="leave out rows with this label (repeatable)")
        p.add_argument("--name", help="dataset name in the results (default: the file's stem)")
        p.add_argument("--limit", type=int, help="only the first N labelled rows (quick checks)")

    p = sub.add_parser("quality", help="Themesift and BERTopic against human codes on a labelled corpus")
    labelled(p)
    p.add_argument("--no-peer", action="store_true", help="Themesift only")
    common(p)
    p.set_defaults(handler=cmd_quality)

    p = sub.add_parser("small", help="small studies: random subsets of the presets (or of --data), Themesift vs "
                                     "BERTopic (issue 24)")
    labelled_csv(p)
    common(p)
    p.add_argument("--presets", nargs="+", default=["nhs-fft-subcategory", "nhs-fft-label", "banking77", "example-study"])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 300],
                   help="segments drawn from each CSV preset (or from --data)")
    p.add_argument("--interviews", type=int, nargs="+", default=[3, 5, 10], help="example-study participants drawn")
    p.add_argument("--draws", type=int, default=5, help="random draws per row, figures averaged over them")
    p.set_defaults(handler=cmd_small)

    p = sub.add_parser("names", help="theme names against human code names (hit@1, hit@3), beside BERTopic's")
    labelled(p)
    p.add_argument("--no-peer", action="store_true", help="Themesift only")
    common(p)
    p.set_defaults(handler=cmd_names)

    p = sub.add_parser("review", help="what a coder's decisions (review, Teach answers) teach the learner, beside "
                                      "random labels and the ceiling, on a preset or any labelled CSV")
    labelled(p)
    p.add_argument("--budgets", type=int, nargs="+", default=[20, 50, 100, 200, 400], help="decision budgets")
    common(p)
    p.set_defaults(handler=cmd_review)

    p = sub.add_parser("adapt", help="the learner on frozen vs adapted vectors (encoder fine-tuned on the same "
                                     "random labelled segments), with training and re-embedding seconds")
    labelled(p)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400],
                   help="labelled segments (at most four fifths of the corpus: near that, the ceiling)")
    p.add_argument("--draws", type=int, default=2, help="random draws per size (draw d also seeds the adapter)")
    p.add_argument("--epochs", type=int, nargs="+", help="adapter passes over the labels to try (default: review.adapt_epochs)")
    common(p)
    p.set_defaults(handler=cmd_adapt)

    p = sub.add_parser("embed-speed", help="segments/s of the ONNX and sentence-transformers backends, side by side")
    p.add_argument("--limit", type=int, help="only the first N segments")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (each backend embeds every chunk)")
    p.add_argument("--int8-fp32-layers", type=int, nargs="+",
                   help="one int8 contender per value of embed.onnx.fp32_layers (default: the configured one)")
    common(p)
    p.set_defaults(handler=cmd_embed_speed)

    p = sub.add_parser("int8-closeness", help="cosine of each int8 recipe's vectors to fp32 on this CPU")
    p.add_argument("--step", type=int, default=5, help="every N-th NHS FFT comment segment (5: about 2,000)")
    p.add_argument("--emulated", action="store_true", help="say in the result's name that the CPU was emulated "
                                                            "(qemu-x86_64 -cpu Haswell)")
    common(p)
    p.set_defaults(handler=cmd_int8_closeness)

    p = sub.add_parser("flow-speed", help="the whole flow cold and warm, per stage, and BERTopic end to end")
    p.add_argument("--limit", type=int, help="only the first N comments")
    p.add_argument("--no-peer", action="store_true", help="skip BERTopic")
    p.add_argument("--rounds", type=int, default=3, help="cold, BERTopic and warm this many times; medians reported")
    common(p)
    p.set_defaults(handler=cmd_flow_speed)

    p = sub.add_parser("growth", help="time and memory at growing corpus sizes, fitted exponent")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    p.add_argument("--embed-sizes", type=int, nargs="+", default=[1000, 3000],
                   help="sizes whose embedding is timed for real (larger ones: linear from the largest of these)")
    common(p)
    p.set_defaults(handler=cmd_growth)

    p = sub.add_parser("growth-point", help="(internal) one size of the growth benchmark, in a fresh process")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--embed", action="store_true")
    p.add_argument("--json", required=True)
    common(p)
    p.set_defaults(handler=cmd_growth_point)

    p = sub.add_parser("review-loop", help="the scripted coder (bench/coder.py) through the real commands: "
                                           "decisions import + apply, k suggestions reviewed")
    p.add_argument("--preset", required=True, help="nhs-fft-label | nhs-fft-subcategory | banking77 | example-study")
    p.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 40], help="suggestions reviewed")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46],
                   help="UMAP seeds: one review per seed, each point averaged over them")
    common(p)
    p.set_defaults(handler=cmd_review_loop)

    p = sub.add_parser("qualcoder", help="QualCoder's own REFI-QDA importer on Themesift's .qdpx export of the example "
                                         "study: every source, user, code, colour and coding kept? (optional: needs "
                                         "QualCoder's source and a Python with PyQt6)")
    p.add_argument("--qualcoder-src", type=Path, required=True, help="the src/ folder of a QualCoder checkout")
    p.add_argument("--python", default=sys.executable,
                   help="a Python with PyQt6, Pillow, PyMuPDF and qtawesome (QualCoder's import-time needs)")
    p.add_argument("--qualcoder-commit", help="QualCoder's commit, for the result, where the source is not a git "
                                              "checkout (default: git rev-parse HEAD in --qualcoder-src)")
    p.add_argument("--out", type=Path, default=report.RESULTS, help="folder for the JSON result (docs/bench)")
    p.set_defaults(handler=cmd_qualcoder)

    p = sub.add_parser("page-speed", help="seconds per review page on a stored study (read only: nothing is decided)")
    p.add_argument("--study", required=True)
    p.add_argument("--config", type=Path, help="the study's configuration (its store)")
    p.add_argument("--rounds", type=int, default=3, help="reads of each page after the first")
    p.add_argument("--word", default="wait", help="what the search page looks for")
    p.add_argument("--name", help="result name (default: the study's)")
    p.add_argument("--out", type=Path, default=report.RESULTS, help="folder for the JSON result (docs/bench)")
    p.set_defaults(handler=cmd_page_speed)

    p = sub.add_parser("repeat", help="same input, same themes: a CSV through themesift suggest on a fresh store and "
                                      "on one whose cache holds its first rows' vectors; themes compared (issue 18)")
    p.add_argument("--data", type=Path, required=True, help="a CSV")
    p.add_argument("--text-col", required=True, help="its text column")
    p.add_argument("--warm", type=int, default=4096, help="rows whose vectors the warm store holds first")
    p.add_argument("--prime", choices=("run", "embed"), default="run",
                   help="how the warm store gets them: a suggest run on those rows alone, or the embedding step alone")
    p.add_argument("--config", type=Path, help="YAML overriding configs/default.yaml, given to both runs")
    p.add_argument("--name", help="result name (default: the file's stem)")
    p.add_argument("--keep", type=Path, help="keep the two workspaces and the runs' logs in this folder")
    p.add_argument("--out", type=Path, default=report.RESULTS, help="folder for the JSON result (docs/bench)")
    p.add_argument("--doc", type=Path, default=report.DOC, help="Markdown summary to rebuild (docs/benchmarks.md)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the Markdown summary")
    p.set_defaults(handler=cmd_repeat)

    p = sub.add_parser("report", help="rebuild docs/benchmarks.md from docs/bench/*.json")
    p.add_argument("--out", type=Path, default=report.RESULTS)
    p.add_argument("--doc", type=Path, default=report.DOC)
    p.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not hasattr(args, "handler"):
        build_parser().print_help()
        return 2
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
