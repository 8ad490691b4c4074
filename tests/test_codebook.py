"""pipeline.learn.codebook: folding the decision log into the codebook, validating decisions, coders compared."""

from __future__ import annotations

import random
from dataclasses import replace

from pipeline.learn import codebook as cb
from pipeline.learn.codebook import Entry, fold, validate

BASE = {1: "t1", 2: "t1", 3: "t1", 4: "t2", 5: "t2", 6: "t3", 7: "t3", 8: None, 9: None}
KEYS = {"t1", "t2", "t3"}
SEGS = set(range(1, 20))
_n = 0


def e(action: str, coder: str = "ann", key: str | None = None, before=None, **after) -> Entry:
    global _n
    _n += 1
    return Entry(uid=f"u{_n}", action=action, coder=coder, theme_key=key, before=before or {}, after=after)


def members(state, key):
    return sorted(s for s, k in state.partition(BASE, KEYS).items() if k == key)


def test_confirm_rename_reject_and_the_partition():
    log = [
        e("confirm", key="t1", before={"members": [1, 2, 3], "label": "cost / money"}, name="Cost",
          definition="Money worries", examples=[1, 2, 3]),
        e("rename", key="t1", name="Costs and funding"),
        e("reject", key="t2", before={"members": [4, 5]}, reason="too vague"),
    ]
    state = fold(log)
    t1, t2 = state.themes["t1"], state.themes["t2"]
    assert (t1.status, t1.name, t1.definition, t1.label) == ("confirmed", "Costs and funding", "Money worries", "cost / money")
    assert t1.members == (1, 2, 3)
    assert (t2.status, t2.reason, t2.members) == ("rejected", "too vague", (4, 5))
    part = state.partition(BASE, KEYS)
    assert part[4] is None and part[5] is None  # a rejected theme's segments go back to the queue
    assert members(state, "t1") == [1, 2, 3] and members(state, "t3") == [6, 7]
    assert [t.key for t in state.confirmed()] == ["t1"] and [t.key for t in state.rejected()] == ["t2"]
    assert state.ignored == []


def test_merge_split_move_add_theme_carry_through_the_partition():
    log = [
        e("merge", key="t1", into="t1", themes=["t1", "t3"],
          before={"themes": {"t1": {"members": [1, 2, 3]}, "t3": {"members": [6, 7]}}}, name="Merged"),
        e("move", key="t2", segment_ids=[8], to="t3"),     # into a merged-away theme: follows the merge
        e("split", key="t1", before={"members": [1, 2, 3, 6, 7, 8]},
          parts=[{"key": "t1.1", "name": "A", "segment_ids": [1, 2, 8]},
                 {"key": "t1.2", "name": "B", "segment_ids": [3, 6, 7]}]),
        e("move", segment_ids=[2], to=None),
        e("add_theme", key="own-1", name="Mine", definition="d", segment_ids=[9, 4]),
    ]
    state = fold(log)
    assert state.themes["t3"].status == "merged" and state.themes["t3"].merged_into == "t1"
    assert state.themes["t1"].status == "split" and state.themes["t1"].name == "Merged"
    assert members(state, "t1.1") == [1, 8] and members(state, "t1.2") == [3, 6, 7]
    assert state.partition(BASE, KEYS)[2] is None
    assert members(state, "own-1") == [4, 9] and state.themes["own-1"].status == "confirmed"
    assert members(state, "t2") == [5]
    kept = {t.key for t in state.kept()}
    assert kept == {"t1.1", "t1.2", "own-1"}  # split parts are carried forward, plain suggestions are not
    renamed = fold(log + [e("rename", key="t2", name="Parking")])  # named by a coder: kept under that name
    into_new = fold([e("confirm", key="t3", name="Cost", definition="money"),  # a confirmed code merged into a
                     e("merge", key="t2", into="t2", themes=["t2", "t3"])])    # suggestion stays in the codebook
    assert [(t.key, t.name, t.definition) for t in into_new.confirmed()] == [("t2", "Cost", "money")]
    assert {t.key for t in renamed.kept()} == kept | {"t2"} and renamed.themes["t2"].status == "new"


def test_code_and_uncode_give_a_segment_several_codes():
    """``code`` adds a theme beside a segment's place; ``uncode`` takes one off and records that the segment
    is not in it; ``move`` leaves the segment one theme; codes follow merges."""
    log = [
        e("code", key="t2", segment_ids=[1, 8], to="t2"),
        e("code", key="t3", segment_ids=[1], to="t3"),
        e("uncode", key="t1", segment_ids=[2], **{"from": "t1"}),
        e("uncode", key="t3", segment_ids=[1], **{"from": "t3"}),
        e("merge", key="t2", into="t2", themes=["t2", "t3"],
          before={"themes": {"t2": {"members": [4, 5]}, "t3": {"members": [6, 7]}}}),
        e("code", key="t1", segment_ids=[4], to="t1"),
        e("move", key="t1", segment_ids=[4], to="t1"),
    ]
    state = fold(log)
    assert state.ignored == []
    codes = state.codes(BASE, KEYS)
    assert codes[1] == ("t1", "t2")          # its place, then the code added beside it (t3 taken off)
    assert codes[2] == ()                     # taken off its only theme: back in the queue
    assert codes[8] == ("t2",)                # an outlier coded: its one code
    assert codes[6] == ("t2",) and codes[4] == ("t1",)  # merged; a move leaves one theme
    assert state.partition(BASE, KEYS)[2] is None
    assert state.against == {"t1": {2}, "t3": {1}}


def test_teach_answers_fold_into_codes_and_negatives():
    log = [
        e("answer", key="t2", segment_ids=[8], answer="yes", proposed="t2"),
        e("answer", key="t2", segment_ids=[9], answer="no", proposed="t2"),
        e("answer", key="t3", segment_ids=[1], answer="other", proposed="t2", to="t3"),
        e("answer", key="own-9", segment_ids=[6], answer="new", proposed="t3", name="Parking"),
        # ticked t1 and t2 of the themes shown (t1, t2, t3): in both, not in t3
        e("answer", key="t2", segment_ids=[7], answer="other", proposed="t2", to=["t1", "t2"], **{"not": ["t3"]}),
    ]
    state = fold(log)
    assert state.ignored == []
    codes = state.codes(BASE, KEYS)
    assert codes[8] == ("t2",) and codes[9] == () and codes[1] == ("t1", "t3")
    assert codes[6] == ("own-9",)             # "not t3, a new theme": t3 taken off, the new one given
    assert state.themes["own-9"].status == "confirmed" and state.themes["own-9"].members == (6,)
    assert codes[7] == ("t1", "t2")           # its place (t3) taken off, the ticked themes given
    assert state.against == {"t2": {9, 1}, "t3": {6, 7}}
    confirmed = fold([e("confirm", key="t1", name="Staff", definition=""), e("move", segment_ids=[4], to="t1")])
    assert state.judged() == {1, 6, 7, 8, 9}  # every answered segment; a theme's members taken in bulk are not
    assert confirmed.judged() == {4}


def test_validate_refuses_bad_codes_and_answers():
    state = fold([e("reject", key="t3", before={"members": [6, 7]}, reason="vague")])
    part = state.partition(BASE, KEYS)

    def problems(entry):
        return " ".join(validate(state, entry, KEYS, SEGS, part))

    assert "already carry" in problems(e("code", key="t1", segment_ids=[1, 2], to="t1"))
    assert problems(e("code", key="t1", segment_ids=[1, 4], to="t1")) == ""
    assert "cannot be given" in problems(e("code", key="t3", segment_ids=[1], to="t3"))
    assert "do not carry" in problems(e("uncode", key="t2", segment_ids=[1], **{"from": "t2"}))
    assert "no such segment" in problems(e("code", key="t1", segment_ids=[99], to="t1"))
    assert "yes, no, other, new" in problems(e("answer", key="t1", segment_ids=[8], answer="maybe", proposed="t1"))
    assert "needs the theme" in problems(e("answer", segment_ids=[8], answer="yes", proposed=None))
    assert "one segment" in problems(e("answer", key="t1", segment_ids=[8, 9], answer="yes", proposed="t1"))
    assert "choose the themes" in problems(e("answer", key="t1", segment_ids=[8], answer="other", proposed="t1"))
    assert "choose an open theme" in problems(e("answer", segment_ids=[8], answer="other", proposed="t1", to=["t3"]))
    assert "name" in problems(e("answer", key="own-1", segment_ids=[8], answer="new", proposed="t1"))
    assert problems(e("answer", key="own-1", segment_ids=[8], answer="new", proposed="t1", name="N")) == ""


def test_undo_takes_back_the_coders_latest_decision_only():
    merge = e("merge", key="t1", into="t1", themes=["t1", "t2"])
    log = [e("confirm", key="t3", name="C", definition="d"), merge, e("reject", coder="bob", key="t3", reason="no")]
    state = fold(log)
    assert state.last_of("ann").uid == merge.uid
    undo = e("undo", undoes=merge.uid)
    assert validate(state, undo, KEYS, SEGS) == []
    assert validate(state, e("undo", undoes=log[0].uid), KEYS, SEGS)  # not the latest one
    state = fold(log + [undo])
    assert state.status_of("t2", KEYS) == "new" and state.undone == {merge.uid: undo.uid}
    assert members(state, "t2") == [4, 5]
    assert state.last_of("ann").uid == log[0].uid  # a second undo would take back the confirm
    assert state.themes["t3"].status == "rejected"  # bob's decision stays


def test_fold_is_deterministic_and_tolerant():
    log = [
        e("merge", key="t1", into="t1", themes=["t1", "t2"]),
        e("rename", key="t2", name="late"),            # t2 is merged: skipped, reported
        e("confirm", key="t1", name="One", definition="d"),
    ]
    a, b = fold(log), fold(list(log))
    assert a.partition(BASE, KEYS) == b.partition(BASE, KEYS)
    assert [u for u, _ in a.ignored] == [log[1].uid]
    assert a.themes["t1"].status == "confirmed"
    # unknown keys in placements fall back to no theme
    state = fold([e("move", segment_ids=[1], to="ghost")])
    assert state.partition(BASE, KEYS)[1] is None


def test_validate_refuses_bad_decisions():
    state = fold([e("merge", key="t1", into="t1", themes=["t1", "t2"]),
                  e("reject", key="t3", reason="x", before={"members": [6, 7]})])
    part = state.partition(BASE, KEYS)

    def errs(entry):
        return validate(state, entry, KEYS, SEGS, part)

    assert errs(e("confirm", key="t1", name="", definition="d"))
    assert errs(e("confirm", key="t1", name="n", definition=" ")) == []   # the definition may come later
    assert errs(e("confirm", key="t1", name="n", definition="x" * 5001))
    named = fold([e("confirm", key="t1", name="Cost", definition="d")])
    assert errs(e("confirm", key="t1", name="n", definition="d")) == []
    assert any("already used" in m for m in validate(named, e("rename", key="t2", name=" cost "), KEYS, SEGS))
    assert validate(named, e("rename", key="t1", name="COST", definition="d2"), KEYS, SEGS) == []  # its own
    parts = [{"key": "t2.1", "name": "A", "segment_ids": [4]}, {"key": "t2.2", "name": "a", "segment_ids": [5]}]
    assert any("different names" in m
               for m in validate(named, e("split", key="t2", before={"members": [4, 5]}, parts=parts), KEYS, SEGS))
    assert errs(e("confirm", key="t2", name="n", definition="d"))       # merged away
    assert errs(e("confirm", key="nope", name="n", definition="d"))
    assert errs(e("confirm", key="t1", name="x" * 201, definition="d"))
    assert errs(e("confirm", key="t3", name="n", definition="d")) == []  # a rejected theme can be reconsidered
    assert errs(e("reject", key="t1", reason=""))
    assert errs(e("merge", key="t1", into="t1", themes=["t1"]))
    assert errs(e("merge", key="t1", into="t1", themes=["t1", "t3"]))   # rejected: not open
    assert errs(e("move", segment_ids=[99], to="t1"))                    # no such segment
    assert errs(e("move", segment_ids=[1], to="t1"))                     # already there
    assert errs(e("move", segment_ids=[1], to="t2"))                     # merged away
    assert errs(e("move", segment_ids=[], to="t1"))
    assert errs(e("move", segment_ids=["x"], to="t1"))
    assert errs(e("move", segment_ids=[1], to=None)) == []
    assert errs(e("add_theme", key="t1", name="n", definition="d", segment_ids=[1]))  # key taken
    assert errs(e("add_theme", key="bad key!", name="n", definition="d", segment_ids=[1]))
    assert errs(e("add_theme", key="own-2", name="n", definition="d", segment_ids=[]))
    assert errs(e("undo", coder="carol", undoes="u1"))
    assert errs(e("frobnicate", key="t1"))
    assert errs(Entry(uid="x", action="confirm", coder=" ", theme_key="t1", after={"name": "n", "definition": "d"}))
    split = dict(before={"members": [1, 2, 3, 4, 5]},
                 parts=[{"key": "t1.1", "name": "A", "segment_ids": [1, 2]},
                        {"key": "t1.2", "name": "B", "segment_ids": [3, 4, 5]}])
    assert errs(e("split", key="t1", **split)) == []
    bad = dict(split, parts=[{"key": "t1.1", "name": "A", "segment_ids": [1, 2]},
                             {"key": "t1.2", "name": "B", "segment_ids": [3, 4]}])
    assert errs(e("split", key="t1", **bad))                              # does not cover the members
    stale = dict(split, before={"members": [1, 2, 3]},
                 parts=[{"key": "t1.1", "name": "A", "segment_ids": [1]}, {"key": "t1.2", "name": "B", "segment_ids": [2, 3]}])
    assert any("changed" in m for m in errs(e("split", key="t1", **stale)))


def test_differences_between_coders():
    log = [
        e("confirm", coder="ann", key="t1", name="Cost", definition="d"),
        e("confirm", coder="bob", key="t1", name="Money", definition="d"),
        e("reject", coder="bob", key="t2", reason="no"),
        e("confirm", coder="ann", key="t3", name="Same", definition="d"),
        e("confirm", coder="bob", key="t3", name="Same", definition="d"),
        e("move", coder="ann", segment_ids=[8], to="t1"),
        e("move", coder="bob", segment_ids=[8], to="t3"),
    ]
    diffs = cb.differences(log)
    assert [(d.kind, d.ref) for d in diffs] == [("theme", "t1"), ("segment", "8")]
    assert diffs[0].views == {"ann": "confirmed as 'Cost'", "bob": "confirmed as 'Money'"}
    assert diffs[1].views == {"ann": "t1", "bob": "t3"}


def test_random_logs_fold_identically_and_keep_a_partition():
    rng = random.Random(7)
    for _ in range(50):
        log = []
        for _ in range(15):
            kind = rng.choice(["confirm", "reject", "move", "merge", "undo", "rename"])
            coder = rng.choice(["ann", "bob"])
            key = rng.choice(sorted(KEYS))
            if kind == "merge":
                other = rng.choice(sorted(KEYS - {key}))
                log.append(e("merge", coder, key, into=key, themes=[key, other]))
            elif kind == "move":
                log.append(e("move", coder, segment_ids=[rng.randint(1, 9)], to=rng.choice([None, *sorted(KEYS)])))
            elif kind == "undo":
                last = fold(log).last_of(coder)
                if last:
                    log.append(e("undo", coder, undoes=last.uid))
            else:
                log.append(e(kind, coder, key, name="n", definition="d", reason="r"))
        a, b = fold(log), fold(log)
        pa = a.partition(BASE, KEYS)
        assert pa == b.partition(BASE, KEYS)
        assert set(pa) == set(BASE)
        assert all(k is None or a.status_of(k, KEYS) in cb.ACTIVE for k in pa.values())


def test_a_decision_is_overtaken_by_newer_ones_on_its_themes_or_segments_only():
    def at(n: int, entry: Entry) -> Entry:
        return replace(entry, id=n)

    log = [at(1, e("confirm", "ann", "t1", name="A")),
           at(2, e("merge", "ben", "t3", themes=["t2", "t3"], into="t3")),
           at(3, e("rename", "ben", "t4", name="D")),
           at(4, e("move", "ben", "t5", segment_ids=[7], to="t5")),
           at(5, e("code", "ben", "t1", segment_ids=[8], to="t1"))]
    reject = e("reject", "ann", "t1", reason="r")
    assert cb.overtaken(log, reject, seen=0) == [log[0]]  # one's own newer decision counts too
    assert cb.overtaken(log, reject, seen=1) == []  # coding a segment is not a decision on the theme
    assert cb.overtaken(log, e("confirm", "ann", "t2", name="B"), seen=1) == [log[1]]  # merged away
    assert cb.overtaken(log, e("merge", "ann", "t4", themes=["t4", "t6"], into="t4"), seen=2) == [log[2]]
    assert cb.overtaken(log, e("move", "ann", "t6", segment_ids=[7, 9], to="t6"), seen=3) == [log[3]]
    assert cb.overtaken(log, e("move", "ann", "t6", segment_ids=[9], to="t5"), seen=3) == []
    assert cb.overtaken(log, e("answer", "ann", "t1", segment_ids=[7], answer="yes"), seen=0) == []
