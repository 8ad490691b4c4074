"""Encoder adaptation (issue 20, item 4): the packaged model fine-tuned for a few passes on three Banking77 codes,
saved, loaded offline under a model id of its own; ``themesift adapt`` and ``apply --adapted`` on a real store.
What adapting buys on a real corpus is measured by ``python -m bench adapt``, not here."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func, select

from conftest import SHARED
from pipeline.embed.encoder import Embedder
from pipeline.learn.adapt import MANIFEST, AdaptError, EncoderAdapter, is_adapted, label_targets, labelled_rows
from pipeline.learn.learner import ThemeLabels

CODES = ("card_arrival", "exchange_rate", "pin_blocked")
FEW_STEPS = dict(epochs=2, batch_size=6, max_steps=8)  # 8 of the 10 steps 30 rows make: enough to move the vectors


def banking_rows(n_per_code: int = 10) -> list[dict]:
    """The first ``n_per_code`` Banking77 test rows of each of three codes (30 rows)."""
    source = SHARED / "banking77" / "test.csv"
    if not source.is_file():
        pytest.skip("shared datasets not present (../shared/datasets)")
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for code in CODES for r in [r for r in rows if r["category"] == code][:n_per_code]]


def code_labels(categories: list[str]) -> dict[str, ThemeLabels]:
    return {c: ThemeLabels(tuple(i for i, x in enumerate(categories) if x == c),
                           tuple(i for i, x in enumerate(categories) if x != c)) for c in CODES}


def test_targets_give_each_labelled_row_its_themes_whatever_the_order_of_the_labels():
    labels = {"b": ThemeLabels((3, 4, 5), (9,)), "a": ThemeLabels((0, 1, 2, 3), (6, 7)), "none": ThemeLabels((), (8,))}
    rows, keys, target = label_targets(labels)
    assert keys == ["a", "b"] and rows == [0, 1, 2, 3, 4, 5, 6, 7, 9]  # 8 speaks only of a theme nobody holds
    assert target[:, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]  # a row for "b" only is against "a"
    assert target[:, 1].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]  # row 3 carries both codes
    again = label_targets(dict(reversed(list(labels.items()))))
    assert again[:2] == (rows, keys) and np.array_equal(again[2], target)
    assert labelled_rows(labels) == set(range(10))
    with pytest.raises(AdaptError, match="none against any theme"):  # nothing against anything
        EncoderAdapter(**FEW_STEPS).fit(["x", "y"], {"a": ThemeLabels((0, 1))})


def test_adapted_model_is_saved_loads_offline_under_its_own_stable_id_and_pulls_codes_together(tmp_path):
    rows = banking_rows()
    texts, categories = [r["text"] for r in rows], [r["category"] for r in rows]
    labels = code_labels(categories)
    adapter = EncoderAdapter(**FEW_STEPS, seed=3).fit(texts, labels)
    assert adapter.steps_ == len(adapter.losses_) == 8 and adapter.labelled_ == 30  # stopped at max_steps
    first = adapter.save(tmp_path / "one" / f"bank-adapted-{adapter.digest_}")
    again = EncoderAdapter(**FEW_STEPS, seed=3).fit(texts, dict(reversed(list(labels.items()))))
    second = again.save(tmp_path / "two" / f"bank-adapted-{again.digest_}")
    assert is_adapted(first) and (first / MANIFEST).is_file() and not (first / "README.md").exists()
    assert first.name == second.name  # the same labels, settings and seed name the same folder

    frozen = Embedder(backend="sentence-transformers")
    tuned = [dataclasses.replace(frozen, model=str(folder)) for folder in (first, second)]
    assert tuned[0].model_id == tuned[1].model_id != frozen.model_id
    assert tuned[0].model_id.startswith(first.name + "@")
    other = EncoderAdapter(**FEW_STEPS, seed=4)
    assert other.digest(texts, labels) != adapter.digest_  # another seed: another folder, another id

    before, one, two = frozen.encode(texts), tuned[0].encode(texts), tuned[1].encode(texts)
    assert np.array_equal(one, two)  # same labels + seed: the same vectors
    same = np.equal.outer(categories, categories) & ~np.eye(len(texts), dtype=bool)
    assert (one @ one.T)[same].mean() > (before @ before.T)[same].mean() + 0.01


@pytest.fixture
def bank_study(prefect_harness, tmp_path):
    """A study of the 30 Banking77 rows suggested through the CLI, every theme of its run confirmed."""
    from flows.cli import main
    from models.review import decide
    from models.store import Store
    from pipeline.config import load_config
    from web.views import load_view

    data = tmp_path / "bank.csv"
    with data.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows([r["text"], r["category"]] for r in banking_rows())
    store_cfg = {"workspace": str(tmp_path / "ws"), "url": f"sqlite:///{tmp_path / 'ws' / 'themesift.db'}"}
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"store": store_cfg}), encoding="utf-8")
    assert main(["suggest", str(data), "--study", "bank", "--config", str(base), "--text-col", "text"]) == 0
    store = Store.from_config(load_config(base)["store"])
    with store.sessions() as session:
        keys = [r.key for r in load_view(session, "bank").rows()]
    for i, key in enumerate(keys):
        decide(store, "bank", "amira", {"action": "confirm", "theme_key": key, "name": f"Code {i}", "definition": "d"})

    def config(**review) -> str:
        path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
        path.write_text(yaml.safe_dump({"store": store_cfg, "review": review}), encoding="utf-8")
        return str(path)

    return store, config


def test_adapt_refuses_below_the_minimum_and_apply_adapted_codes_with_the_adapted_vectors(bank_study, capsys):
    from flows.cli import main
    from models.codings import Coder, Coding
    from models.records import Embedding
    from pipeline.embed.encoder import text_hash
    from pipeline.learn.apply import APPLY_CODER

    store, config = bank_study
    capsys.readouterr()
    assert main(["adapt", "--study", "bank", "--config", config(adapt_min_labels=1000)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    found = re.match(r"themesift: study 'bank' has (\d+) labelled segments", err[0]) if len(err) == 1 else None
    assert found and int(found[1]) >= 20, err  # every member of every theme: the clustering's own count
    labelled = int(found[1])
    assert f"needs at least 1000 (review.adapt_min_labels): {1000 - labelled} more" in err[0]
    assert main(["apply", "--study", "bank", "--adapted", "--config", config(adapt_min_labels=1000)]) == 2
    assert "review.adapt_min_labels" in capsys.readouterr().err

    small = config(adapt_min_labels=20, adapt_epochs=1, adapt_batch_size=8)
    assert main(["adapt", "--study", "bank", "--config", small]) == 0
    out = capsys.readouterr().out
    assert f"Adapted the embedding model to {labelled} labelled segments of " in out and "Embedded the 30 segments" in out
    assert "labelled segments each (the median); adapting paid where they had about 50" in out  # 10 codes' worth
    folder = next((Path(yaml.safe_load(Path(small).read_text())["store"]["workspace"]) / "models").iterdir())
    assert folder.name.startswith("bank-adapted-") and is_adapted(folder)
    model_id = f"{folder.name}@"

    assert main(["apply", "--study", "bank", "--adapted", "--config", small]) == 0
    out = capsys.readouterr().out
    assert "already adapted to these decisions" in out and "Coded " in out and model_id in out
    with store.sessions() as session:
        origins = session.scalars(select(Coding.origin).join(Coder).where(Coder.name == APPLY_CODER)).all()
        cached = session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id.startswith(model_id)))
        name_hashes = {text_hash(f"Code {i}") for i in range(100)}  # the fixture's names of the confirmed themes
        names = session.scalar(select(func.count()).select_from(Embedding).where(
            Embedding.model_id.startswith(model_id), Embedding.text_hash.in_(name_hashes)))
    assert origins and all(f"vectors of {model_id}" in o for o in origins)
    # the adapted vectors, cached apart from the frozen model's: the 30 segments' and the confirmed themes'
    # names' (each name is an example of its theme, review.learner_names)
    assert names >= 1 and cached == 30 + names

    assert main(["apply", "--study", "bank", "--config", small]) == 0  # the default stays the frozen model
    with store.sessions() as session:
        origins = session.scalars(select(Coding.origin).join(Coder).where(Coder.name == APPLY_CODER)).all()
    assert origins and not any(model_id in o for o in origins)


def test_the_adapt_benchmark_result_is_a_table_in_the_report():
    from bench.report import adapt_section, current

    point = {"labelled": 100, "frozen": 0.2, "frozen_per_draw": [0.1, 0.3], "adapted_4": 0.25,
             "adapted_4_per_draw": [0.2, 0.3], "train_seconds_4": 20.0, "embed_seconds_4": 15.0}
    result = {"kind": "adapt", "dataset": "fft", "n_units": 2000, "n_codes": 8, "draws": 2, "epochs": [4],
              "settings": {"adapt_batch_size": 16, "adapt_learning_rate": 3e-5, "adapt_head_learning_rate": 3e-3},
              "points": [point], "command": "python -m bench adapt", "code": "abc1234"}
    text = "\n".join(adapt_section(result))
    assert "| labelled segments | frozen | adapted, 4 epochs | train + re-embed s |" in text
    assert "| 100 | 0.200 (0.100-0.300) | 0.250 (0.200-0.300) | 20 + 15 |" in text
    assert "100: 0.200 vs 0.250" in "\n".join(current([result]))
