"""Progress off a terminal is a few log lines, not a redrawn bar."""

import logging

from gasp_core.progress import LogProgress, progress


def test_off_a_terminal_it_logs_a_line_per_interval_and_one_at_the_end(monkeypatch, caplog):
    monkeypatch.setenv("GASP_PROGRESS", "log")
    now = [0.0]
    monkeypatch.setattr("gasp_core.progress.time.monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="gasp_core.progress"):
        bar = progress(total=100, desc="pretrain gasp", unit="step", every_s=35)
        assert isinstance(bar, LogProgress)
        for i in range(100):
            now[0] += 10.0  # each step takes 10 s
            bar.update()
            bar.set_postfix(loss=1.0 / (i + 1))
        bar.close()
        bar.close()  # closing twice logs once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 100 * 10 // 40 + 1  # one per 4 updates (40 s > 35 s), plus the final one
    assert lines[-1].startswith("pretrain gasp: 100/100 step in") and lines[-1].endswith("[loss=0.01]")
    assert all("\r" not in line for line in lines)


def test_iterating_logs_the_end_and_a_bar_is_drawn_only_when_asked(monkeypatch, caplog):
    monkeypatch.setenv("GASP_PROGRESS", "log")
    with caplog.at_level(logging.INFO, logger="gasp_core.progress"):
        assert list(progress(range(5), desc="logs", every_s=1e9)) == [0, 1, 2, 3, 4]
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["logs: 5/5 it"]
    monkeypatch.setenv("GASP_PROGRESS", "bar")
    assert type(progress(total=3)).__name__ == "tqdm"
    assert type(progress(total=3, disable=True)).__name__ == "tqdm"
