"""What importing a package pulls in, and which way imports run (the design page's "Layout").

In the style of smolagents' tests/test_import.py: each import runs in a fresh interpreter, so what
an earlier test loaded cannot hide what this one loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loads(module: str) -> set[str]:
    """The top-level packages that `import module` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print('\\n'.join(sorted({{name.split('.')[0] for name in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("module", "never"),
    [
        ("models.train_job", {"slack_bolt", "slack_sdk", "bot", "handlers"}),
        ("handlers.qa.handler", {"slack_bolt", "slack_sdk", "torch"}),
        ("handlers.qa.agent", {"slack_bolt", "slack_sdk", "torch"}),
        ("handlers", {"torch", "slack_bolt"}),
        ("handlers.slack.wiring", {"torch"}),
        ("db", {"torch", "handlers", "bot"}),
        ("db.feedback", {"torch", "handlers", "bot"}),
        ("db.search", {"torch", "handlers", "bot"}),
        ("playground", {"torch", "transformers", "slack_bolt", "bot", "handlers", "db"}),
    ],
)
def test_an_import_loads_only_its_own_layer(module: str, never: set[str]) -> None:
    assert loads(module) & never == set()


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports inside functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_imports_run_one_way() -> None:
    assert offenders("models", ("handlers", "bot")) == []
    assert offenders("db", ("handlers", "bot", "models", "torch")) == []
    assert offenders("handlers", ("bot",)) == []
    # The local workspace is Slack's side of the protocol: Ember's layers never reach into it (only
    # bot/ starts it), and it knows nothing of Ember's.
    assert offenders("playground", ("bot", "handlers", "models", "db", "torch", "slack_bolt")) == []
    for layer in ("handlers", "models", "db"):
        assert offenders(layer, ("playground",)) == []


def test_the_qa_layer_has_no_slack_in_it() -> None:
    assert offenders("handlers/qa", ("slack_bolt", "slack_sdk")) == []
    assert offenders("handlers/qa", ("handlers.slack",)) == []


def test_the_training_process_never_imports_slack() -> None:
    assert offenders("models", ("slack_bolt", "slack_sdk")) == []
