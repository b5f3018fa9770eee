"""prompt/render.py: strict, located errors; the bounds; compiled once."""

from __future__ import annotations

import pytest

from prompt.render import (
    Limits,
    RenderLimitExceeded,
    TemplateRuntimeFailure,
    compile_template,
    render,
    render_all,
)


def test_renders_variables() -> None:
    t = compile_template("Hello {{ name }}, {{ items|join(', ') }}", "system_prompt")
    assert render(t, {"name": "Ada", "items": ["a", "b"]}, Limits()) == "Hello Ada, a, b"


def test_undefined_is_an_error_with_its_location() -> None:
    t = compile_template("line one\n{{ nmae }}", "messages[2].template")
    with pytest.raises(TemplateRuntimeFailure) as err:
        render(t, {"name": "x"}, Limits())
    assert "nmae" in err.value.message
    assert err.value.where() == "messages[2].template, line 2"


def test_runtime_error_names_type_and_line() -> None:
    t = compile_template("a\nb\n{{ 1 / n }}", "system_prompt")
    with pytest.raises(TemplateRuntimeFailure) as err:
        render(t, {"n": 0}, Limits())
    assert "ZeroDivisionError" in err.value.message and err.value.line == 3


def test_syntax_error_is_a_template_failure() -> None:
    with pytest.raises(TemplateRuntimeFailure) as err:
        compile_template("{% for %}", "system_prompt")
    assert err.value.line == 1


def test_output_size_limit() -> None:
    t = compile_template("{% for i in range(n) %}xxxxxxxxxx{% endfor %}", "t")
    assert len(render(t, {"n": 10}, Limits(max_chars=100))) == 100
    with pytest.raises(RenderLimitExceeded, match="100 characters"):
        render(t, {"n": 11}, Limits(max_chars=100))


def test_time_limit_over_a_loop_of_values() -> None:
    t = compile_template(
        "{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}", "t"
    )
    with pytest.raises(RenderLimitExceeded, match="time limit"):
        render(t, {"x": list(range(1000))}, Limits(time_s=0.02))


def test_shared_time_budget_over_templates() -> None:
    t = compile_template("{{ x }}", "t")
    assert render_all([(t, {"x": 1}), (t, {"x": 2})], Limits()) == ["1", "2"]


def test_loops_still_work() -> None:
    t = compile_template(
        "{% for i in xs %}{{ loop.index }}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}", "t"
    )
    assert render(t, {"xs": ["a", "b"]}, Limits()) == "1a,2b"
