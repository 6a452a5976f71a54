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
