"""Reading study files: YAML 1.2 scalars, duplicate keys refused, no Python objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunecli.errors import SpecError
from tunecli.spec.yamlio import dump_yaml, load_yaml_file, load_yaml_text


def test_yaml_12_scalars() -> None:
    data = load_yaml_text("a: [1e-5, 010, on, yes, true, 1:30, 0x10, .5]", "x")
    assert data["a"] == [1e-5, 10, "on", "yes", True, "1:30", 16, 0.5]


@pytest.mark.parametrize(("text", "words"), [
    ("a: 1\na: 2\n", "written twice"),
    ("a: !!python/object:os.system x\n", "not allowed"),
    ("a:\n\tb: 1\n", "tabs"),
    ("a: [1, 2\n", "x:"),
])
def test_bad_yaml_is_one_line_naming_the_place(text: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_yaml_text(text, "x")
    assert words in caught.value.line() and "\n" not in caught.value.line()


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_yaml_file(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match="is a folder"):
        load_yaml_file(tmp_path)
    (tmp_path / "bad.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match="UTF-8"):
        load_yaml_file(tmp_path / "bad.yaml")


def test_dump_keeps_the_order_and_reads_back() -> None:
    data = {"name": "x", "space": {"lr": {"float": [1e-4, 0.1], "log": True}}, "b": 1}
    text = dump_yaml(data)
    assert text.index("name") < text.index("space") < text.index("b:")
    assert load_yaml_text(text, "x") == data
