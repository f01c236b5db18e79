"""SEVLM_THREADS: read, checked and applied; the course's numbers come from its fixed thread count."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.settings import COURSE_THREADS, Settings, apply_threads


def test_threads_default_is_the_courses_and_auto_is_torch_choice():
    assert Settings.from_env({}).threads == COURSE_THREADS == 2
    settings = Settings.from_env({"SEVLM_THREADS": " Auto "})
    assert settings.threads is None
    before = torch.get_num_threads()
    assert apply_threads(settings) == before


@pytest.mark.parametrize("raw", ["zero", "1.5", "0", "-2"])
def test_bad_threads_name_the_variable(raw):
    with pytest.raises(ValueError, match=r"SEVLM_THREADS=.*positive integer"):
        Settings.from_env({"SEVLM_THREADS": raw})


def test_threads_applied_and_restored():
    before = torch.get_num_threads()
    try:
        assert apply_threads(Settings.from_env({"SEVLM_THREADS": "1"})) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
