"""The README's quickstart runs, and its set-up commands are the ones CI uses."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["W_next"].shape == (3, 8)


def test_exactly_two_setup_commands_pin_torch():
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert len(commands) == 2
    for cmd in commands:
        assert "pip install" in cmd and "torch==2.13.0" in cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci
