"""The config reader's bounds (pipeline/config/yamlsrc.py): honest YAML up to each limit
loads exactly as before, one step past it is refused with the line where it happened."""
from __future__ import annotations

import pytest
import yaml

from pipeline.config import yamlsrc
from pipeline.config.yamlsrc import MAX_ALIAS_VALUES, MAX_CONFIG_BYTES, MAX_DEPTH, PURE_PYTHON_READERS, YAMLLimit, bounded_loader

# libyaml's parser when PyYAML has it (here), and PyYAML's own where it does not: the same bounds.
LOADERS = [pytest.param(bounded_loader(), id="libyaml"), pytest.param(bounded_loader(PURE_PYTHON_READERS), id="pure-python")]


@pytest.fixture(params=LOADERS)
def load_located(request):
    return lambda path: yamlsrc.load_located(path, request.param)


def _write(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_anchors_reused_honestly_expand_like_copies(tmp_path, load_located):
    text = (
        "tol: &tol {atol: 1.0e-3, rtol: 0.01}\n"
        "targets:\n"
        "  - {name: tflite, tolerances: {y: *tol}}\n"
        "  - {name: onnx, tolerances: {y: *tol}}\n"
    )
    located = load_located(_write(tmp_path, text))
    assert located.value["targets"][1]["tolerances"]["y"] == {"atol": 1.0e-3, "rtol": 0.01}
    assert located.line(("targets", 1, "tolerances", "y")) == 4


def _aliases(count: int, width: int) -> str:
    """An anchored list of `width` scalars (width + 1 values) aliased `count` times."""
    return f"base: &b [{', '.join(['v'] * width)}]\nrepeats:\n" + "".join(f"  - *b\n" for _ in range(count))


def test_aliases_may_repeat_up_to_the_budget_and_no_further(tmp_path, load_located):
    width = 99  # each alias repeats 100 values
    fits = MAX_ALIAS_VALUES // (width + 1)
    assert len(load_located(_write(tmp_path, _aliases(fits, width))).value["repeats"]) == fits
    with pytest.raises(YAMLLimit, match=r"the alias \*b repeats 100 value\(s\)") as refused:
        load_located(_write(tmp_path, _aliases(fits + 1, width)))
    assert refused.value.line == 3 + fits  # the alias that crossed the budget


def test_nesting_up_to_the_limit_loads_and_one_more_level_is_refused_at_its_line(tmp_path, load_located):
    deep = "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"  # the mapping is level 1
    assert load_located(_write(tmp_path, deep)).value["x"] is not None
    block = "a: 1\nx:\n" + "".join("  " * i + "-\n" for i in range(MAX_DEPTH)) + "  " * MAX_DEPTH + "- end\n"
    with pytest.raises(YAMLLimit, match=rf"nested more than {MAX_DEPTH} levels") as refused:
        load_located(_write(tmp_path, block))
    assert refused.value.line == 2 + MAX_DEPTH


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path, load_located):
    fits = "a: 1\n# " + "x" * (MAX_CONFIG_BYTES - 8) + "\n"
    assert len(fits.encode()) == MAX_CONFIG_BYTES
    assert load_located(_write(tmp_path, fits)).value == {"a": 1}
    with pytest.raises(YAMLLimit, match=r"262,145 bytes; a model config may be at most 262,144 bytes") as refused:
        load_located(_write(tmp_path, fits + "\n"))
    assert refused.value.line == 3  # the byte past the limit is on the line after the comment


def test_a_collection_as_key_is_refused_at_its_line(tmp_path, load_located):
    with pytest.raises(YAMLLimit, match="a key is a list or a mapping") as refused:
        load_located(_write(tmp_path, "a: 1\n? {b: 2}\n: 3\n"))
    assert refused.value.line == 2


def test_a_billion_laughs_and_20000_levels_are_refused_by_either_reader(tmp_path, load_located):
    laughs = "lol0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    with pytest.raises(YAMLLimit, match=r"the alias \*a2 repeats 1,111 value\(s\)") as refused:
        load_located(_write(tmp_path, laughs))
    assert refused.value.line == 4
    with pytest.raises((YAMLLimit, yaml.YAMLError), match="nest"):  # libyaml stops at 1000 flow levels itself
        load_located(_write(tmp_path, "deep: " + "[" * 20000 + "]" * 20000 + "\n"))
