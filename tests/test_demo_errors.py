"""Errors: the visitor gets one sentence, the server log gets the traceback; the decord -> PyAV fallback says once
why it is used."""

from __future__ import annotations

import logging
import sys

import gradio as gr
import pytest

from videorefer import video_io
from videorefer.demo.handlers import user_errors
from videorefer.demo.limits import DemoError
from videorefer.demo.testing import write_video


def test_an_unexpected_error_is_one_sentence_for_the_visitor_and_a_traceback_in_the_log(caplog):
    @user_errors
    def broken():
        raise KeyError("secret internal detail")

    @user_errors
    def refused():
        raise DemoError("Please upload a video first.")

    with caplog.at_level(logging.ERROR, logger="videorefer.demo.handlers"):
        with pytest.raises(gr.Error) as error:
            broken()
    assert "secret" not in error.value.message and "server log" in error.value.message
    record = caplog.records[-1]
    assert record.exc_info and record.exc_info[0] is KeyError and "broken" in record.getMessage()
    caplog.clear()
    with pytest.raises(gr.Error, match="upload a video first"):
        refused()
    assert not caplog.records  # a visitor's mistake is not a server error


def test_the_pyav_fallback_is_logged_once(tmp_path, monkeypatch, caplog):
    video = write_video(tmp_path / "clip.mp4", 6)
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` raises ImportError
    monkeypatch.setattr(video_io, "_FALLBACK_LOGGED", set())
    with caplog.at_level(logging.INFO, logger="videorefer.video_io"):
        for _ in range(3):
            assert video_io.read_frames(str(video), [0, 5]).shape == (2, 48, 64, 3)
    messages = [r.getMessage() for r in caplog.records if "instead of decord" in r.getMessage()]
    assert messages == ["decoding videos with PyAV instead of decord: decord is not installed"]
