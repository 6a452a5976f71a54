from __future__ import annotations

import secure_ml.errors as errors


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_has_its_own_exit_code():
    classes = {errors.SecureMLError, *_subclasses(errors.SecureMLError)}
    assert classes == set(errors.EXIT_CODES)
    codes = list(errors.EXIT_CODES.values())
    assert len(codes) == len(set(codes))
    assert all(0 < c < 64 for c in codes)


def test_unknown_exceptions_and_interrupts_get_their_own_codes():
    assert errors.exit_code_for(RuntimeError()) == errors.UNEXPECTED_EXIT_CODE
    assert errors.exit_code_for(KeyboardInterrupt()) == errors.INTERRUPTED_EXIT_CODE
    assert errors.exit_code_for(errors.PartyFailure("a", "b")) == 9


def test_a_party_failure_exits_with_the_code_of_the_party_error():
    data_error = errors.EXIT_CODES[errors.DataError]
    assert errors.exit_code_for(errors.PartyFailure("a", "b", exit_code=data_error)) == 5
    assert errors.exit_code_for(errors.PartyFailure("a", "b", exit_code=70)) == 70
    assert errors.exit_code_for(errors.PartyFailure("a", "killed", exit_code=None)) == 9


def test_an_unexpected_exception_in_the_cli_exits_70_with_one_last_line(tmp_path, capsys):
    from secure_ml.cli import main

    resolved = tmp_path / "resolved.json"  # the launcher's resolved-spec format, but no "spec"
    resolved.write_text("{}")
    assert main(["spec", "check", str(resolved)]) == errors.UNEXPECTED_EXIT_CODE
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: unexpected KeyError: 'spec'") and "a bug" in last
