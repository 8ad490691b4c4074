"""QualCoder's own REFI-QDA project importer run on a ``.qdpx``, headless, into a fresh QualCoder project.

Run by ``python -m bench qualcoder`` (``bench/qualcoder_check.py``) with the Python of a separate
environment that has PyQt6 (and QualCoder's few import-time needs: Pillow, PyMuPDF, qtawesome), never
Themesift's: this file imports nothing of Themesift. QualCoder is not on PyPI; ``--qualcoder-src`` is its
source folder (the one holding ``qualcoder/``).

What is QualCoder's and what is not:

- the project's tables are made by the ``CREATE TABLE`` statements of QualCoder's own
  ``MainWindow.new_project`` (read from ``__main__.py`` with ``ast``, so they follow QualCoder's
  source), and ``App.update_coder_names`` (QualCoder's, as on opening a project) adds the coder table;
- ``RefiImport(app, text_edit, "qdpx")`` is QualCoder's class, run as its menu entry runs it; only its
  file dialog (which returns the ``.qdpx``) and its modal message boxes (recorded, not shown) are
  replaced, and Qt runs with the ``offscreen`` platform;
- ``App`` is QualCoder's, with its settings in a private home folder. Importing it pulls in QualCoder's
  AI modules (LangChain, sentence-transformers, PyTorch) only for their model list: when those are not
  installed, a stand-in ``qualcoder.ai_llm`` gives an empty model list (AI stays off, as by default) and
  the result says so.

Writes ``result.json`` into ``--work`` (QualCoder prints to stdout itself): the project folder (its
``data.qda`` is the SQLite database), the importer's log and messages, the active coder QualCoder chose,
and whether the AI stand-in was used.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import sys
import types
from pathlib import Path


def _new_project_sql(main_py: Path) -> tuple[list[str], str | None]:
    """The ``CREATE TABLE`` statements of QualCoder's ``new_project`` and its database version (``v17``)."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "new_project")
    creates, version = [], None
    for call in ast.walk(fn):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "execute"
                and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
            continue
        sql = call.args[0].value
        if sql.lstrip().upper().startswith("CREATE TABLE"):
            creates.append(sql)
        elif (sql.upper().startswith("INSERT INTO PROJECT") and len(call.args) > 1
              and isinstance(call.args[1], ast.Tuple)):
            first = call.args[1].elts[0]
            version = first.value if isinstance(first, ast.Constant) else None
    return creates, version


def _ai_stand_in() -> None:
    """A ``qualcoder.ai_llm`` with only what ``App`` calls at start: no AI models."""
    module = types.ModuleType("qualcoder.ai_llm")
    module.get_default_ai_models = lambda: []
    module.update_ai_models = lambda models, index, settings=None: (models, index, None)
    sys.modules["qualcoder.ai_llm"] = module


def run(src: Path, qdpx: Path, work: Path) -> dict:
    home = work / "home"
    (home / ".qualcoder").mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)  # QualCoder's config.ini and recent projects go here, not the user's
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(src))
    from PyQt6 import QtWidgets

    qt = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    import qualcoder  # noqa: F401  (installs gettext's _)

    stand_in = False
    try:
        from qualcoder.app import App
    except ImportError:
        stand_in = True
        _ai_stand_in()
        from qualcoder.app import App
    import qualcoder.refi as refi

    messages: list[dict] = []

    class Recorded:
        """QualCoder's ``Message`` box, recorded instead of shown (a modal box would wait for a click)."""

        def __init__(self, app, title, text, icon=None):
            messages.append({"title": str(title), "text": str(text), "icon": icon})

        def exec(self):
            return 0

    refi.Message = Recorded
    QtWidgets.QFileDialog.getOpenFileName = staticmethod(lambda *a, **k: (str(qdpx), "(*.qdpx *.QDPX)"))

    app = App()
    app.settings["ai_enable"] = "False"
    project = work / "themesift-export.qda"
    for sub in ("", "images", "audio", "video", "documents"):
        (project / sub).mkdir(parents=True, exist_ok=True)
    app.project_name = project.name
    app.create_connection(str(project))
    creates, version = _new_project_sql(src / "qualcoder" / "__main__.py")
    cur = app.conn.cursor()
    for sql in creates:
        cur.execute(sql)
    app.update_coder_names()
    cur.execute("INSERT INTO project VALUES(?,?,?,?,?,?,?,?,null,null,null)",
                (version, datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S"), "", app.version, 0, 0,
                 app.settings["codername"], ""))
    app.conn.commit()

    log = QtWidgets.QTextEdit()
    refi.RefiImport(app, log, "qdpx")
    app.update_coder_names()  # as QualCoder does on opening the project
    app.conn.close()
    qt.processEvents()
    return {"project": str(project), "database": str(project / "data.qda"), "database_version": version,
            "tables_made": len(creates), "active_coder": app.settings["codername"], "log": log.toPlainText(),
            "messages": messages, "ai_stand_in": stand_in, "qualcoder_version": app.version}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qualcoder-src", type=Path, required=True, help="folder holding qualcoder/ (its src/)")
    parser.add_argument("--qdpx", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the project and QualCoder's home")
    args = parser.parse_args()
    result = run(args.qualcoder_src.resolve(), args.qdpx.resolve(), args.work.resolve())
    (args.work / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
