"""Every test that needs NVIDIA DALI is marked `dali`, so that it skips, with the reason, where
DALI is not installed (tests/conftest.py), instead of failing.

Both checks run pytest in a subprocess whose ``sitecustomize.py`` (on PYTHONPATH, so torchrun
and the installed commands inherit it) refuses ``nvidia.dali*`` and DALI's ``wds2idx``, as a
machine without DALI would:

- ``-m dali`` over the whole suite (~15 s on 2 busy cores: collection plus skips): every
  marked test is reported skipped with the DALI reason, and no module fails to import, which
  catches a test module that imports DALI at its top.
- the unmarked, non-slow tests of FILES (~20 s): none fails. A test using DALI without
  importing it (the DALI loaders, vireid-train / vireid-test whose default loader is DALI,
  wds2idx) only shows itself by running, so this is the check that fails when a mark is
  missing. FILES are the quick files where marked and unmarked tests drive the same loaders
  and commands, where a new test most easily forgets its mark.

Running every unmarked test without DALI would cover the rest too, but repeats the suite
(many minutes): do it by hand after adding tests that train or evaluate,
``.venv/bin/python tests/test_dali_markers.py [pytest arguments, default tests]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
FILES = ("tests/train/test_bad_input.py", "tests/train/test_device.py",
         "tests/train/test_runner.py", "tests/train/test_config_file.py",
         "tests/loader/test_dali_errors.py", "tests/loader/test_loaders.py",
         "tests/loader/test_truncated_png.py")
BLOCKER = '''import sys


class RefuseDali:
    """Find no NVIDIA DALI and no wds2idx, as where they are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name in ("nvidia.dali", "wds2idx") or name.startswith("nvidia.dali."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, RefuseDali())
'''


def run_without_dali(folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    """pytest ``arguments`` with DALI unimportable; its JUnit XML report is folder/report.xml."""
    (folder / "site").mkdir(parents=True)
    (folder / "site" / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(filter(None, [str(folder / "site"), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
               "addopts=--strict-markers", "--tb=line", "-rfE", "--basetemp", str(folder / "tmp"),
               "--junitxml", str(folder / "report.xml"), *arguments]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=600)


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test id → (outcome, message) from a JUnit XML report; outcome: passed, skipped,
    failure or error (a collection error is an error of its module)."""
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        child = next((c for c in case if c.tag in ("skipped", "failure", "error")), None)
        found[name] = ("passed", "") if child is None else (child.tag, child.get("message"))
    return found


def test_every_dali_test_skips_with_the_reason_without_dali(tmp_path):
    from tests.conftest import DALI_REASON

    result = run_without_dali(tmp_path, "-m", "dali", "tests")
    found = outcomes(tmp_path / "report.xml")
    wrong = {name: seen for name, seen in found.items() if seen[0] != "skipped"}
    assert result.returncode == 0 and not wrong, (wrong, result.stdout[-3000:])
    reasons = [message for _, message in found.values()]
    assert reasons.count(DALI_REASON) > 100  # the suite's ~160 marked tests (some skip first
    # for another reason, e.g. a skipif of their own), not an empty selection


def test_unmarked_tests_pass_without_dali(tmp_path):
    result = run_without_dali(tmp_path, "-m", "not dali and not slow and not gpu", *FILES)
    found = outcomes(tmp_path / "report.xml")
    failed = sorted(name for name, (outcome, _) in found.items() if outcome in (
        "failure", "error"))
    assert result.returncode == 0 and not failed, (
        "tests that need DALI but are not marked `dali`:\n" + "\n".join(failed) + "\n"
        + result.stdout[-3000:])
    assert sum(outcome == "passed" for outcome, _ in found.values()) > 20


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        done = run_without_dali(Path(folder), "-m", "not dali and not gpu", "--ignore",
                                __file__, *(sys.argv[1:] or ["tests"]))
        print(done.stdout[-20000:], done.stderr[-3000:], sep="\n")
        sys.exit(done.returncode)
