"""The CLI dispatcher: every command is listed, and a closed pipe is not an error."""

import subprocess
import sys

import pytest

from remixup.cli import COMMANDS, build_parser


def test_every_command_is_available():
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text


@pytest.mark.slow
def test_closed_pipe_is_silent():
    # `remixup methods | head -1`: the reader leaves early; no "Broken pipe" error line, exit 0
    script = "import sys; from remixup.cli import main; sys.exit(main(['reproduce', 'table1', '--dry-run']))"
    producer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.readline()
    producer.stdout.close()
    err = producer.stderr.read().decode()
    producer.stderr.close()
    assert producer.wait(timeout=60) == 0
    assert "Broken pipe" not in err and "Traceback" not in err
