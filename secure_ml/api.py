"""The public Python API: run a protocol, or your own function, on every party.

``run(fn, spec)`` starts every party of ``spec`` as a fresh process on this
host (the same fail-fast launcher as ``secure-ml run``), calls ``fn(session)``
in each party (not the dealer) and returns ``{party name: return value}``.
Inside ``fn`` use ``session.share(...)``, CrypTen ops on the shares
(``session.crypten``) and ``session.reveal(..., to=[...])``; a party outside
CrypTen's world (``crypten = false``) uses ``session.send``/``receive``
instead. The same function runs per host with
``secure-ml party SPEC --function ...`` (one process per machine).

Both entries hold the output folder's lock for the whole run (one run per
folder). A party's failure raises ``PartyFailure``; ``exit_code_for(error)``
gives the exit code the CLI would use (the party's own error's code).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secure_ml.errors import SpecError
from secure_ml.launch.local import View, launch
from secure_ml.launch.lock import hold_output
from secure_ml.protocols import PYTHON_FUNCTION, get_protocol
from secure_ml.result import assemble, write_result
from secure_ml.spec import Spec, as_spec

if TYPE_CHECKING:
    from secure_ml.session import Session


def run(
    fn: Callable[[Session], Any],
    spec: Spec | Mapping[str, Any] | str | Path,
    *,
    out: str | Path | None = None,
    timeout: float | None = None,
    view: View | None = None,
) -> dict[str, Any]:
    """Run ``fn(session)`` on every party (not the dealer); return each party's value.

    An ``optional`` party that failed has no entry (the run went on without it).
    """
    spec = as_spec(spec)
    with tempfile.TemporaryDirectory(prefix="secure-ml-") as scratch:
        out_dir = Path(out) if out is not None else Path(scratch)
        function_file = Path(scratch) / "function.pkl"
        _pickle_function(fn, function_file)
        with hold_output(out_dir, spec_source=spec.source):
            outcome = launch(
                spec, out_dir=out_dir, function_file=function_file, timeout=timeout, view=view
            )
            return {
                party.name: _load_return(outcome.control_dir / f"{party.name}.return.pkl")
                for party in spec.roster.processes
                if not party.is_dealer and party.name not in outcome.dropped
            }


def run_protocol(
    spec: Spec,
    *,
    out: str | Path,
    timeout: float | None = None,
    view: View | None = None,
) -> dict[str, Any]:
    """Run the spec's registered protocol on every party; write ``result.json``."""
    if spec.protocol.name == PYTHON_FUNCTION:
        raise SpecError(
            f"{spec.source}: [protocol] name = 'python' means a user function: run it "
            "from Python with secure_ml.run(fn, spec)"
        )
    protocol = get_protocol(spec.protocol.name)
    with hold_output(out, spec_source=spec.source):
        outcome = launch(spec, out_dir=out, timeout=timeout, view=view)
        reference = protocol.plaintext_reference(spec, outcome.party_dirs)
        result = assemble(spec, outcome, plaintext_metrics=reference)
        write_result(outcome.out_dir, result)
    return result


def _pickle_function(fn: Callable[..., Any], path: Path) -> None:
    """Pickle ``fn`` for fresh interpreters.

    Functions from installed modules go by reference; functions from scripts,
    notebooks or test files (which a fresh interpreter may not import under the
    same name) go by value, with their module's helpers.
    """
    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is not None and not _importable_elsewhere(module.__name__):
        cloudpickle.register_pickle_by_value(module)
    with open(path, "wb") as f:
        cloudpickle.dump(fn, f)


def _importable_elsewhere(module_name: str) -> bool:
    if module_name == "__main__":
        return False
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return False
    origin = getattr(found, "origin", None) or ""
    return "site-packages" in origin or module_name.split(".")[0] == "secure_ml"


def _load_return(path: Path) -> Any:
    import cloudpickle

    with open(path, "rb") as f:
        return cloudpickle.load(f)
