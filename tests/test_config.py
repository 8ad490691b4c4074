"""The configuration is checked as a whole when loaded: types, ranges and unknown keys at every depth; a bad
setting is refused before any work with one ``themesift:`` line naming it and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TRANSCRIPTS
from flows.cli import main
from pipeline.config import (
    ConfigError,
    ReviewSettings,
    Settings,
    SizeRule,
    default_config,
    load_config,
    scaled,
    settings,
)


def refusal(tmp_path: Path, text: str) -> str:
    """The message that refuses a study YAML holding ``text``."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# One row a rule: the YAML a study might hold, and what the message must say.
BAD = {
    # the values the issue named
    "section not a mapping": ("cluster: 5", "cluster: 5 is not allowed; use a mapping of settings (seed, "),
    "max_sentences 0": ("segment: {max_sentences: 0}",
                        "segment.max_sentences: 0 is not allowed; use a whole number >= 1"),
    "cache_chunk 0": ("embed: {cache_chunk: 0}", "embed.cache_chunk: 0 is not allowed; use a whole number >= 1"),
    "1e9 is text to YAML": ("cluster: {hdbscan: {min_cluster_size: 1e9}}",
                            "cluster.hdbscan.min_cluster_size: '1e9' is text to YAML, not a number: write 1000000000; "
                            "use a whole number >= 2 or {sqrt|fraction, min, max}"),
    "seed text": ('cluster: {seed: "abc"}',
                  "cluster.seed: 'abc' is not allowed; use a whole number from 0 to 4294967295"),
    "backend unknown": ("embed: {backend: tensorflow}",
                        "embed.backend: 'tensorflow' is not allowed; use one of onnx, sentence-transformers"),
    "min_cluster_size 0": ("cluster: {hdbscan: {min_cluster_size: 0}}",
                           "cluster.hdbscan.min_cluster_size: 0 is not allowed; use a whole number >= 2 or "
                           "{sqrt|fraction, min, max}"),
    "min_cluster_size -3": ("cluster: {hdbscan: {min_cluster_size: -3}}",
                            "cluster.hdbscan.min_cluster_size: -3 is not"),
    "n_components 0": ("cluster: {umap: {n_components: 0}}",
                       "cluster.umap.n_components: 0 is not allowed; use a whole number >= 2"),
    "negative weight": ("rank: {weights: {coverage: -100}}",
                        "rank.weights.coverage: -100 is not allowed; use a number >= 0"),
    # size rules
    "size rule min above max": ("cluster: {hdbscan: {min_cluster_size: {sqrt: 0.2, min: 50, max: 10}}}",
                                "cluster.hdbscan.min_cluster_size: min 50 is above max 10; use min <= max"),
    "size rule min below the least": ("cluster: {hdbscan: {min_cluster_size: {sqrt: 0.2, min: 1, max: 10}}}",
                                      "cluster.hdbscan.min_cluster_size.min: 1 is not allowed; use a whole "
                                      "number >= 2"),
    "size rule sqrt and fraction": ("cluster: {hdbscan: {min_cluster_size: {sqrt: 0.2, fraction: 0.01}}}",
                                    "has both sqrt and fraction"),
    "size rule neither": ("cluster: {hdbscan: {min_cluster_size: {min: 5, max: 10}}}",
                          "cluster.hdbscan.min_cluster_size: {'min': 5, 'max': 10} has neither sqrt nor fraction"),
    "size rule factor": ("cluster: {hdbscan: {min_cluster_size: {sqrt: 0, min: 5}}}",
                         "cluster.hdbscan.min_cluster_size.sqrt: 0 is not allowed; use a number > 0"),
    "size rule fraction above 1": ("cluster: {hdbscan: {min_samples: {fraction: 2}}}",
                                   "cluster.hdbscan.min_samples.fraction: 2 is not allowed; use a number > 0 and <= 1"),
    "min_samples 0": ("cluster: {hdbscan: {min_samples: 0}}",
                      "cluster.hdbscan.min_samples: 0 is not allowed; use a whole number >= 1 or "
                      "{sqrt|fraction, min, max} or null"),
    # whole numbers
    "seed fraction": ("cluster: {seed: 1.5}", "cluster.seed: 1.5 is not allowed"),
    "seed negative": ("cluster: {seed: -1}", "cluster.seed: -1 is not allowed"),
    "seed null": ("cluster: {seed: null}", "cluster.seed: null is not allowed"),
    "seed true": ("cluster: {seed: true}", "cluster.seed: true is not allowed"),
    "min_segments below 4": ("cluster: {min_segments: 3}",
                             "cluster.min_segments: 3 is not allowed; use a whole number >= 4"),
    "n_neighbors 1": ("cluster: {umap: {n_neighbors: 1}}",
                      "cluster.umap.n_neighbors: 1 is not allowed; use a whole number >= 2"),
    "n_epochs 0": ("cluster: {umap: {n_epochs: 0}}",
                   "cluster.umap.n_epochs: 0 is not allowed; use a whole number >= 1 or null"),
    "exact_knn_max negative": ("cluster: {umap: {exact_knn_max: -1}}", "cluster.umap.exact_knn_max: -1 is not allowed"),
    "second pass min_cluster_size": ("cluster: {second_pass: {min_cluster_size: 1}}",
                                     "cluster.second_pass.min_cluster_size: 1 is not allowed; use a whole number >= 2"),
    "split min_cluster_size": ("cluster: {split_broad: {min_cluster_size: 1}}",
                               "cluster.split_broad.min_cluster_size: 1 is not allowed"),
    "min_label_repeats 0": ("ingest: {min_label_repeats: 0}", "ingest.min_label_repeats: 0 is not allowed"),
    "max_label_words 0": ("ingest: {max_label_words: 0}", "ingest.max_label_words: 0 is not allowed"),
    "target_words 0": ("segment: {target_words: 0}", "segment.target_words: 0 is not allowed"),
    "min_words negative": ("segment: {min_words: -1}", "segment.min_words: -1 is not allowed; use a whole number >= 0"),
    "max_tokens 0": ("segment: {max_tokens: 0}", "segment.max_tokens: 0 is not allowed"),
    "batch_size 0": ("embed: {batch_size: 0}", "embed.batch_size: 0 is not allowed"),
    "task_texts 0": ("embed: {task_texts: 0}", "embed.task_texts: 0 is not allowed"),
    "progress_min_texts negative": ("embed: {progress_min_texts: -1}", "embed.progress_min_texts: -1 is not allowed"),
    "onnx threads negative": ("embed: {onnx: {threads: -1}}",
                              "embed.onnx.threads: -1 is not allowed; use a whole number >= 0"),
    "onnx streams negative": ("embed: {onnx: {streams: -2}}", "embed.onnx.streams: -2 is not allowed"),
    "onnx batch_size 0": ("embed: {onnx: {batch_size: 0}}", "embed.onnx.batch_size: 0 is not allowed"),
    "fp32_layers negative": ("embed: {onnx: {fp32_layers: -1}}", "embed.onnx.fp32_layers: -1 is not allowed"),
    "n_keywords 0": ("describe: {n_keywords: 0}", "describe.n_keywords: 0 is not allowed"),
    "keyphrase_candidates 0": ("describe: {keyphrase_candidates: 0}",
                               "describe.keyphrase_candidates: 0 is not allowed"),
    "label_keyphrases 0": ("describe: {label_keyphrases: 0}", "describe.label_keyphrases: 0 is not allowed"),
    "n_quotes 0": ("describe: {n_quotes: 0}", "describe.n_quotes: 0 is not allowed"),
    "quote_min_words negative": ("describe: {quote_min_words: -1}", "describe.quote_min_words: -1 is not allowed"),
    "name method unknown": ("describe: {name: {method: llm}}", "describe.name.method: 'llm' is not allowed"),
    "name max_words 0": ("describe: {name: {max_words: 0}}", "describe.name.max_words: 0 is not allowed"),
    "name max_words 9": ("describe: {name: {max_words: 9}}", "describe.name.max_words: 9 is not allowed"),
    "name min_members 0": ("describe: {name: {min_members: 0}}", "describe.name.min_members: 0 is not allowed"),
    "name candidates 0": ("describe: {name: {candidates: 0}}", "describe.name.candidates: 0 is not allowed"),
    "name phrases 0": ("describe: {name: {phrases: 0}}", "describe.name.phrases: 0 is not allowed"),
    "name diversity above 1": ("describe: {name: {diversity: 1.5}}", "describe.name.diversity: 1.5 is not allowed"),
    "name neighbour_weight negative": ("describe: {name: {neighbour_weight: -0.1}}",
                                       "describe.name.neighbour_weight: -0.1 is not allowed"),
    "name description_pool 0": ("describe: {name: {description_pool: 0}}",
                                "describe.name.description_pool: 0 is not allowed"),
    "name description_min_words 0": ("describe: {name: {description_min_words: 0}}",
                                     "describe.name.description_min_words: 0 is not allowed"),
    "name description_max_words 0": ("describe: {name: {description_max_words: 0}}",
                                     "describe.name.description_max_words: 0 is not allowed"),
    "name description words reversed": ("describe: {name: {description_min_words: 12, description_max_words: 6}}",
                                         "describe.name.description_min_words: 12 is above description_max_words 6"),
    "name model backend unknown": ("describe: {name: {model: {backend: gguf}}}",
                                   "describe.name.model.backend: 'gguf' is not allowed; use one of none, ollama"),
    "name model off read as false": ("describe: {name: {model: {backend: off}}}",
                                     "describe.name.model.backend: false is not allowed"),
    "name model without a model": ("describe: {name: {model: {backend: ollama}}}",
                                   "describe.name.model.model: null is not allowed when describe.name.model.backend "
                                   "is ollama"),
    "name model server remote": ("describe: {name: {model: {backend: ollama, model: m, server: 'http://10.0.0.7:11434'}}}",
                                 "describe.name.model.server: 'http://10.0.0.7:11434' is not this machine"),
    "name model server a host name": ("describe: {name: {model: {backend: ollama, model: m, "
                                      "server: 'http://llm.example.org'}}}",
                                      "describe.name.model.server: 'http://llm.example.org' is not this machine"),
    "name model server not http": ("describe: {name: {model: {server: '127.0.0.1:11434'}}}",
                                   "describe.name.model.server: '127.0.0.1:11434' is not a server address"),
    "name model allow_remote text": ("describe: {name: {model: {allow_remote: 'yes'}}}",
                                     "describe.name.model.allow_remote: 'yes' is not allowed; use true or false"),
    "name model folder missing": ("describe: {name: {model: {backend: transformers, model: /no/such/folder}}}",
                                  "describe.name.model.model: '/no/such/folder' is not a model folder"),
    "name model endpoint unknown": ("describe: {name: {model: {endpoint: completions}}}",
                                    "describe.name.model.endpoint: 'completions' is not allowed"),
    "name model timeout 0": ("describe: {name: {model: {timeout_s: 0}}}", "describe.name.model.timeout_s: 0 is not allowed"),
    "name model seed negative": ("describe: {name: {model: {seed: -1}}}", "describe.name.model.seed: -1 is not allowed"),
    "name model max_new_tokens 4": ("describe: {name: {model: {max_new_tokens: 4}}}",
                                    "describe.name.model.max_new_tokens: 4 is not allowed"),
    "name model keywords 0": ("describe: {name: {model: {keywords: 0}}}", "describe.name.model.keywords: 0 is not allowed"),
    "name model quotes negative": ("describe: {name: {model: {quotes: -1}}}",
                                   "describe.name.model.quotes: -1 is not allowed"),
    "name model quote_max_words 0": ("describe: {name: {model: {quote_max_words: 0}}}",
                                     "describe.name.model.quote_max_words: 0 is not allowed"),
    "name model name_max_words 0": ("describe: {name: {model: {name_max_words: 0}}}",
                                    "describe.name.model.name_max_words: 0 is not allowed"),
    "n_resamples 0": ("rank: {stability: {n_resamples: 0}}", "rank.stability.n_resamples: 0 is not allowed"),
    "min_positive negative": ("compare: {min_positive: -1}", "compare.min_positive: -1 is not allowed"),
    "top_k 0": ("compare: {top_k: 0}", "compare.top_k: 0 is not allowed; use a whole number >= 1"),
    "matrix_quotes negative": ("compare: {matrix_quotes: -1}", "compare.matrix_quotes: -1 is not allowed"),
    "port 0": ("review: {port: 0}", "review.port: 0 is not allowed; use a port number from 1 to 65535"),
    "port 70000": ("review: {port: 70000}", "review.port: 70000 is not allowed; use a port number from 1 to 65535"),
    "port quoted": ("review: {port: '8080'}", "review.port: '8080' is text to YAML, not a number: write 8080"),
    # numbers and their ranges
    "sqlite_timeout negative": ("store: {sqlite_timeout_s: -1}",
                                "store.sqlite_timeout_s: -1 is not allowed; use a number of seconds >= 0"),
    "run_lock_wait negative": ("store: {run_lock_wait_s: -5}", "store.run_lock_wait_s: -5 is not allowed"),
    "reduced_space_days negative": ("runner: {reduced_space_days: -1}",
                                    "runner.reduced_space_days: -1 is not allowed; use a number of days >= 0 or null"),
    "max_file_mb 0": ("ingest: {max_file_mb: 0}", "ingest.max_file_mb: 0 is not allowed; use a number of MB > 0"),
    "max_unpacked_mb 0": ("ingest: {max_unpacked_mb: 0}",
                          "ingest.max_unpacked_mb: 0 is not allowed; use a number of MB > 0"),
    "max_xml_mb negative": ("ingest: {max_xml_mb: -1}", "ingest.max_xml_mb: -1 is not allowed; use a number of MB > 0"),
    "min_dist above 1": ("cluster: {umap: {min_dist: 2}}",
                         "cluster.umap.min_dist: 2 is not allowed; use a number from 0 to 1"),
    "epsilon negative": ("cluster: {hdbscan: {cluster_selection_epsilon: -0.1}}",
                         "cluster.hdbscan.cluster_selection_epsilon: -0.1 is not allowed; use a number >= 0"),
    "percentile above 100": ("cluster: {join_outliers: {percentile: 101}}",
                             "cluster.join_outliers.percentile: 101 is not allowed; use a number from 0 to 100 "
                             "or null"),
    "similarity above 1": ("cluster: {join_outliers: {min_similarity: 1.5}}",
                           "cluster.join_outliers.min_similarity: 1.5 is not allowed; use a cosine similarity "
                           "from -1 to 1"),
    "margin negative": ("cluster: {join_outliers: {uncertain_margin: -0.1}}",
                        "cluster.join_outliers.uncertain_margin: -0.1 is not allowed"),
    "second pass divisor below 1": ("cluster: {second_pass: {size_divisor: 0.5}}",
                                    "cluster.second_pass.size_divisor: 0.5 is not allowed; use a number >= 1 or null"),
    "split size_factor 0": ("cluster: {split_broad: {size_factor: 0}}",
                            "cluster.split_broad.size_factor: 0 is not allowed"),
    "split divisor null": ("cluster: {split_broad: {size_divisor: null}}",
                           "cluster.split_broad.size_divisor: null is not allowed; use a number >= 1"),
    "split similarity": ("cluster: {split_broad: {max_similarity: 2}}", "cluster.split_broad.max_similarity: 2 is not"),
    "outlier hint similarity": ("cluster: {outlier_suggestion_min_similarity: -2}",
                                "cluster.outlier_suggestion_min_similarity: -2 is not allowed"),
    "int8_min_cosine above 1": ("embed: {onnx: {int8_min_cosine: 1.5}}",
                                "embed.onnx.int8_min_cosine: 1.5 is not allowed; use a number from 0 to 1 or null"),
    "smooth 0": ("embed: {onnx: {smooth: 0}}",
                 "embed.onnx.smooth: 0 is not allowed; use a number > 0 and <= 1 or null"),
    "all weights 0": ("rank: {weights: {coverage: 0, cohesion: 0, distinctiveness: 0, stability: 0, size: 0}}",
                      "rank.weights: every weight is 0"),
    "sample_fraction 0": ("rank: {stability: {sample_fraction: 0}}",
                          "rank.stability.sample_fraction: 0 is not allowed; use a number > 0 and <= 1"),
    "stability min_segments 1": ("rank: {stability: {min_segments: 1}}",
                                 "rank.stability.min_segments: 1 is not allowed; use a whole number >= 2"),
    "smallest_theme_cases 1": ("cluster: {smallest_theme_cases: 1}",
                               "cluster.smallest_theme_cases: 1 is not allowed; use a whole number >= 2"),
    "small corpus largest share": ("cluster: {small_corpus_largest_share: 0}",
                                   "cluster.small_corpus_largest_share: 0 is not allowed; use a number > 0 and <= 1"),
    "small_corpus_segments -1": ("cluster: {small_corpus_segments: -1}",
                                 "cluster.small_corpus_segments: -1 is not allowed"),
    "small_n_neighbors 1": ("cluster: {umap: {small_n_neighbors: 1}}",
                            "cluster.umap.small_n_neighbors: 1 is not allowed; use a whole number >= 2"),
    "found_again_jaccard above 1": ("rank: {stability: {found_again_jaccard: 1.5}}",
                                    "rank.stability.found_again_jaccard: 1.5 is not allowed; use a number from 0 to 1"),
    "min_cover above 1": ("compare: {min_cover: 1.5}",
                          "compare.min_cover: 1.5 is not allowed; use a number from 0 to 1"),
    "recovered_f1 negative": ("compare: {recovered_f1: -0.5}", "compare.recovered_f1: -0.5 is not allowed"),
    "calibration_percentile above 100": ("review: {calibration_percentile: 150}",
                                         "review.calibration_percentile: 150 is not allowed"),
    "review min_similarity": ("review: {min_similarity: 2}", "review.min_similarity: 2 is not allowed"),
    "learner_neighbours -1": ("review: {learner_neighbours: -1}", "review.learner_neighbours: -1 is not allowed"),
    "learner_neighbour_weight 2": ("review: {learner_neighbour_weight: 2}",
                                   "review.learner_neighbour_weight: 2 is not allowed"),
    "learner_threshold": ("review: {learner_threshold: mean}",
                          "review.learner_threshold: 'mean' is not allowed; use one of f1, prevalence"),
    "review margin": ("review: {uncertain_margin: 2}", "review.uncertain_margin: 2 is not allowed"),
    "rejected_similarity": ("review: {rejected_similarity: -3}", "review.rejected_similarity: -3 is not allowed"),
    "diff_match_jaccard 0": ("review: {diff_match_jaccard: 0}",
                             "review.diff_match_jaccard: 0 is not allowed; use a number > 0 and <= 1"),
    "teach_unsure negative": ("review: {teach_unsure: -1}", "review.teach_unsure: -1 is not allowed"),
    "teach_far too many": ("review: {teach_far: 500}", "review.teach_far: 500 is not allowed"),
    "run_unlabelled_count above 1": ("review: {run_unlabelled_count: 2}", "review.run_unlabelled_count: 2 is not allowed"),
    "teach_neighbours 0": ("review: {teach_neighbours: 0}", "review.teach_neighbours: 0 is not allowed"),
    "learner_names not a flag": ("review: {learner_names: 1}",
                                 "review.learner_names: 1 is not allowed; use true or false"),
    "adapt not a flag": ("review: {adapt: 'yes'}", "review.adapt: 'yes' is not allowed; use true or false"),
    "adapt_min_labels 1": ("review: {adapt_min_labels: 1}",
                           "review.adapt_min_labels: 1 is not allowed; use a whole number from 2 to 1000000"),
    "adapt_examples_per_theme 0": ("review: {adapt_examples_per_theme: 0}",
                                   "review.adapt_examples_per_theme: 0 is not allowed; use a whole number >= 1"),
    "adapt_epochs 0": ("review: {adapt_epochs: 0}", "review.adapt_epochs: 0 is not allowed; use a whole number from 1"),
    "adapt_batch_size 1": ("review: {adapt_batch_size: 1}", "review.adapt_batch_size: 1 is not allowed"),
    "adapt_max_steps negative": ("review: {adapt_max_steps: -1}", "review.adapt_max_steps: -1 is not allowed"),
    "adapt_head_learning_rate 2": ("review: {adapt_head_learning_rate: 2}",
                                   "review.adapt_head_learning_rate: 2 is not allowed"),
    "adapt_learning_rate 0": ("review: {adapt_learning_rate: 0}",
                              "review.adapt_learning_rate: 0 is not allowed; use a number > 0 and <= 0.01"),
    "adapt_learning_rate as text": ("review: {adapt_learning_rate: 2e-5}",
                                    "'2e-5' is text to YAML, not a number: write 0.00002"),
    "adapt_seed negative": ("review: {adapt_seed: -1}", "review.adapt_seed: -1 is not allowed; use a whole number >= 0"),
    "not finite": ("cluster: {umap: {min_dist: .nan}}", "cluster.umap.min_dist: nan is not allowed"),
    "small number as text": ("cluster: {umap: {min_dist: 1e-3}}", "'1e-3' is text to YAML, not a number: write 0.001"),
    # choices, flags, text
    "runner kind": ("runner: {kind: kubernetes}", "runner.kind: 'kubernetes' is not allowed; use one of local, dask"),
    "dask without address": ("runner: {kind: dask}",
                             "runner.dask_address: null is not allowed when runner.kind is dask"),
    "precision": ("embed: {onnx: {precision: int4}}",
                  "embed.onnx.precision: 'int4' is not allowed; use one of fp32, int8"),
    "int8_weights": ("embed: {onnx: {int8_weights: s16}}",
                     "embed.onnx.int8_weights: 's16' is not allowed; use one of auto, s8, u8"),
    "selection method": ("cluster: {hdbscan: {cluster_selection_method: tree}}",
                         "cluster.hdbscan.cluster_selection_method: 'tree' is not allowed; use one of eom, leaf"),
    "umap metric": ("cluster: {umap: {metric: cosin}}",
                    "cluster.umap.metric: 'cosin' is not allowed; use one of cosine, "),
    "allow_spinning text": ("embed: {onnx: {allow_spinning: 'yes'}}",
                            "embed.onnx.allow_spinning: 'yes' is not allowed; use true or false"),
    "model empty": ("embed: {model: ''}", "embed.model: '' is not allowed"),
    "device number": ("embed: {device: 0}", "embed.device: 0 is not allowed"),
    "workspace null": ("store: {workspace: null}", "store.workspace: null is not allowed; use a folder"),
    "database url": ("store: {url: 'not a url'}", "store.url: 'not a url' is not a database URL; use a SQLAlchemy URL"),
    "bad regular expression": ("segment: {interviewer_pattern: '(int'}",
                               "segment.interviewer_pattern: '(int' is not a regular expression (missing )"),
    "label pattern not text": ("ingest: {known_label_pattern: 5}", "ingest.known_label_pattern: 5 is not allowed"),
    "csv column not text": ("ingest: {csv: {text_column: 3}}",
                            "ingest.csv.text_column: 3 is not allowed; use a column name or a list of column names"),
    "csv columns empty": ("ingest: {csv: {text_column: []}}", "ingest.csv.text_column: [] is not allowed"),
    "csv columns not a list": ("ingest: {csv: {attribute_columns: site}}",
                               "ingest.csv.attribute_columns: 'site' is not allowed; use a list of column names"),
    "stopword read as true": ("describe: {domain_stopwords: [okay, yes]}",
                              "describe.domain_stopwords[1]: true is not allowed; use a word in quotes"),
    "ngram_range reversed": ("describe: {ngram_range: [2, 1]}",
                             "describe.ngram_range: [2, 1] is not allowed; use [low, high]: two whole numbers"),
    "ngram_range zero": ("describe: {ngram_range: [0, 1]}", "describe.ngram_range: [0, 1] is not allowed"),
    "ngram_range one number": ("describe: {ngram_range: 2}", "describe.ngram_range: 2 is not allowed"),
    # unknown keys at every depth
    "unknown at depth 1": ("clustr: {seed: 1}", "unknown setting 'clustr' (known: cluster, compare, "),
    "unknown at depth 2": ("cluster: {sed: 1}", "unknown setting 'cluster.sed' (known: "),
    "unknown at depth 3": ("cluster: {umap: {n_neighbours: 10}}",
                           "unknown setting 'cluster.umap.n_neighbours' (known: "),
    "unknown inside a size rule": ("cluster: {hdbscan: {min_cluster_size: {sqrt: 0.2, min: 5, max: 150, maximum: 9}}}",
                                   "unknown setting 'cluster.hdbscan.min_cluster_size.maximum' (known: sqrt or "
                                   "fraction, min, max)"),
    "a size rule where a whole number goes": ("cluster: {second_pass: {min_cluster_size: {sqrt: 1}}}",
                                              "cluster.second_pass.min_cluster_size: {'sqrt': 1} is not allowed"),
}


@pytest.mark.parametrize("text, expected", list(BAD.values()), ids=list(BAD))
def test_a_bad_setting_is_refused_with_its_name_and_what_is_allowed(tmp_path, text, expected):
    assert expected in refusal(tmp_path, text)


def test_a_yaml_syntax_error_is_one_line_with_where(tmp_path):
    message = refusal(tmp_path, "cluster:\n  seed: [1\n")
    assert "cannot read configuration" in message and "(line 3, column 1)" in message


GOOD = {
    "nulls where allowed": "store: {url: null}\nrunner: {dask_address: null, reduced_space_days: null}\n"
                           "cluster: {umap: {n_epochs: null}, hdbscan: {min_samples: null},"
                           " join_outliers: {percentile: null}, second_pass: {size_divisor: null},"
                           " split_broad: {size_factor: null}}\n"
                           "embed: {onnx: {cache_dir: null, int8_min_cosine: null, smooth: null}}",
    "a whole number written with .0": "cluster: {hdbscan: {min_cluster_size: 20.0}}",
    "a size rule without bounds": "cluster: {hdbscan: {min_cluster_size: {sqrt: 0.3}}}",
    "a plain size where the default is a rule": "cluster: {hdbscan: {min_samples: 3}}",
    "dask with an address": "runner: {kind: dask, dask_address: 'tcp://10.0.0.5:8786'}",
    "a PostgreSQL URL": "store: {url: 'postgresql+psycopg://user@host/db'}",
    "the edges of ranges": "cluster: {seed: 0, umap: {min_dist: 1}, join_outliers: {percentile: 0}}\n"
                           "review: {port: 65535, diff_match_jaccard: 1}\nembed: {onnx: {smooth: 1}}",
    "adaptation on, at the edges": "review: {adapt: true, adapt_min_labels: 2, adapt_epochs: 1, adapt_batch_size: 2, "
                                   "adapt_learning_rate: 0.01, adapt_head_learning_rate: 1, adapt_seed: 0}",
    "no csv attributes": "ingest: {csv: {attribute_columns: null}}",
    "quoted yes as a stopword": "describe: {domain_stopwords: ['yes', 'no']}",
    "a float written YAML's way": "cluster: {hdbscan: {min_cluster_size: 1.0e+3}}",
    "a model server on loopback": "describe: {name: {model: {backend: ollama, model: 'llama3.1:8b', "\
                                  "server: 'http://[::1]:11434', endpoint: chat}}}",
    "a remote model server the config allows": "describe: {name: {model: {backend: ollama, model: m, "\
                                               "server: 'https://llm.example.org', allow_remote: true}}}",
}


@pytest.mark.parametrize("text", list(GOOD.values()), ids=list(GOOD))
def test_good_settings_are_taken(tmp_path, text):
    path = tmp_path / "good.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert isinstance(settings(config), Settings)


def test_the_defaults_and_the_shipped_study_config_load():
    config = load_config()
    assert config == default_config()  # the plain dict, as every manifest stores it
    s = settings(config)
    assert s.cluster.hdbscan.min_cluster_size == SizeRule("sqrt", 0.2, 5, 150)
    assert s.cluster.hdbscan.min_samples == SizeRule("fraction", 0.002, 2, 10)
    assert s.describe.ngram_range == (1, 2) and s.ingest.csv.attribute_columns == ()
    assert s.review.port == 8765 and s.embed.backend == "onnx" and s.runner.kind == "local"
    assert s.rank.weights.parts() == default_config()["rank"]["weights"]
    confirmable = load_config(ROOT / "configs" / "confirmable-first.yaml")
    assert settings(confirmable).rank.weights.parts()["cohesion"] == 1.0
    # every section of default.yaml has its typed section, and every setting its field
    for name, section in default_config().items():
        typed = getattr(s, name)
        assert set(section) == {f.name for f in dataclasses.fields(typed)}, name


def test_sections_are_frozen_and_partial_mappings_take_the_defaults():
    review = ReviewSettings.of({"port": 9000})
    assert review.port == 9000 and review.diff_match_jaccard == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        review.port = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown setting 'review.prot'"):
        ReviewSettings.of({"prot": 9000})
    with pytest.raises(ConfigError, match="review: 5 is not allowed"):
        ReviewSettings.of(5)  # type: ignore[arg-type]
    assert settings({"cluster": {"seed": 7}}).cluster.seed == 7


def test_size_rules_resolve_as_before():
    rule = settings(load_config()).cluster.hdbscan.min_cluster_size
    assert [scaled(rule, n) for n in (300, 10_000, 10**7)] == [5, 20, 150]
    assert scaled(SizeRule("fraction", 0.002), 10_000) == 20 and scaled(7, 10_000) == 7


def test_each_stage_is_built_from_its_section_as_from_the_dict(cfg):
    from pipeline.embed.encoder import Embedder
    from pipeline.embed.int8 import Int8Recipe
    from pipeline.ingest.read import Ingester
    from pipeline.ingest.segment import Segmenter
    from pipeline.themes.assemble import SecondPass
    from pipeline.themes.cluster import ThemeClusterer
    from pipeline.themes.describe import ThemeDescriber
    from pipeline.themes.join import JoinRule

    s = settings(cfg)
    assert Ingester.from_config(s.ingest) == Ingester.from_config(cfg["ingest"])
    assert Segmenter.from_config(s.segment) == Segmenter.from_config(cfg["segment"])
    assert Embedder.from_config(s.embed) == Embedder.from_config(cfg["embed"])
    assert Int8Recipe.from_config(s.embed.onnx) == Int8Recipe.from_config(cfg["embed"]["onnx"])
    clusterer = ThemeClusterer.from_config(s.cluster, 10_000)
    assert vars(clusterer) == vars(ThemeClusterer.from_config(cfg["cluster"], 10_000))
    assert ThemeDescriber.from_config(s.describe) == ThemeDescriber.from_config(cfg["describe"])
    assert JoinRule.from_config(s.cluster.join_outliers) == JoinRule.from_config(cfg["cluster"]["join_outliers"])
    assert SecondPass.from_config(s.cluster.second_pass) == SecondPass.from_config(cfg["cluster"]["second_pass"])
    with pytest.raises(ConfigError, match="segment.max_sentences: 0 is not allowed"):
        Segmenter.from_config({**cfg["segment"], "max_sentences": 0})


def test_a_bad_configuration_dict_is_refused_before_the_flow_starts(cfg, tmp_path):
    from flows.suggest import run_suggest

    bad = {**cfg, "store": {**cfg["store"], "workspace": str(tmp_path / "ws")},
           "cluster": {**cfg["cluster"], "seed": "abc"}}
    with pytest.raises(ConfigError, match="cluster.seed: 'abc' is not allowed"):
        run_suggest([str(TRANSCRIPTS)], "x", bad)
    assert not (tmp_path / "ws").exists()


def test_the_prefect_deploy_step_refuses_a_bad_setting():
    from flows.schedule import deployment_config

    with pytest.raises(ConfigError, match="review.port: 0 is not allowed"):
        deployment_config(None, {"review": {"port": 0}})


def test_the_review_page_checks_its_settings_before_reading_the_store(tmp_path):
    from models.store import Store
    from web.app import create_app

    with pytest.raises(ConfigError, match="review.diff_match_jaccard: 2 is not allowed"):
        create_app(Store(f"sqlite:///{tmp_path / 'none.db'}"), "x", review={"diff_match_jaccard": 2})


# -- the command line: one themesift: line, exit 2, nothing started ------------------------------
def one_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("themesift: "), captured.err
    return lines[0]


def test_suggest_refuses_a_bad_config_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")},
                                   "cluster": {"hdbscan": {"min_cluster_size": 0}}}), encoding="utf-8")
    assert main(["suggest", str(TRANSCRIPTS), "--study", "x", "--config", str(bad)]) == 2
    line = one_line(capsys)
    assert "cluster.hdbscan.min_cluster_size: 0 is not allowed" in line and ">= 2" in line
    assert not (tmp_path / "ws").exists()  # no store opened, no flow run recorded


@pytest.mark.parametrize("argv, expected", [
    (["review", "--study", "x", "--port", "0"],
     "themesift: --port: 0 is not allowed; use a port number from 1 to 65535"),
    (["schedule", "--study", "x", "--interval", "-5"], "themesift: --interval: -5 is not allowed; use a number of "
                                                        "seconds > 0 and <= 31536000"),
    (["schedule", "--study", "x", "--interval", "1e12"], "themesift: --interval: 1000000000000.0 is not allowed"),
    (["compare", "--study", "x", "--min-cover", "2"],
     "themesift: --min-cover: 2 is not allowed; use a number from 0 to 1"),
    (["compare", "--study", "x", "--top-k", "0"], "themesift: --top-k: 0 is not allowed; use a whole number >= 1"),
    (["import", "codings", "f.csv", "--study", "x", "--min-cover", "-1"], "themesift: --min-cover: -1 is not allowed"),
    (["matrix", "--study", "x", "--quotes", "two"],
     "themesift: --quotes: 'two' is not allowed; use a whole number >= 0"),
    (["themes", "--study", "x", "--top", "-3"], "themesift: --top: -3 is not allowed; use a number of themes >= 1"),
], ids=["review port", "schedule interval", "schedule interval too long", "compare min-cover", "compare top-k",
        "import min-cover", "matrix quotes", "themes top"])
def test_options_that_set_a_setting_are_checked_the_same_way(capsys, argv, expected):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert one_line(capsys).startswith(expected)


@pytest.mark.parametrize("command", [["review"], ["themes"], ["changes"], ["compare"],
                                     ["schedule", "--interval", "60"]])
def test_every_command_refuses_a_bad_config_file(tmp_path, capsys, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("review: {port: 70000}\n", encoding="utf-8")
    folder = ["--folder", str(tmp_path)] if command[0] == "schedule" else []
    assert main([*command, "--study", "x", "--config", str(bad), *folder]) == 2
    assert "review.port: 70000 is not allowed; use a port number from 1 to 65535" in one_line(capsys)


def test_the_digest_covers_what_shapes_results_not_where_they_are_kept(tmp_path, monkeypatch):
    """The same settings through another store address, password or runner are the same configuration (a run
    that changes nothing says so); a setting that shapes the themes is not. $THEMESIFT_CONFIG names a team's
    file for every command that is given no --config."""
    from flows.options import load
    from pipeline.config import config_digest, load_config

    base = load_config()
    elsewhere = {**base, "store": {**base["store"], "url": "postgresql+psycopg://team@db.example/themesift"},
                 "runner": {**base["runner"], "kind": "dask"}}
    assert config_digest(elsewhere) == config_digest(base)
    assert config_digest({**base, "cluster": {**base["cluster"], "seed": base["cluster"]["seed"] + 1}}) != config_digest(base)
    team = tmp_path / "team.yaml"
    team.write_text("cluster:\n  seed: 7\n", encoding="utf-8")
    monkeypatch.setenv("THEMESIFT_CONFIG", str(team))
    assert load()["cluster"]["seed"] == 7 and load(ROOT / "configs" / "default.yaml")["cluster"]["seed"] != 7
