"""The template-injection suite: payloads that try to reach Python objects, the filesystem or the
environment, or to hang or flood the renderer — in a template, and arriving as variable values.
Each must end as a clean refusal (TemplateRuntimeFailure / RenderLimitExceeded, which the executor
answers 400) or as inert text."""

from __future__ import annotations

import os
import time

import pytest

from prompt.render import Limits, RenderLimitExceeded, TemplateRuntimeFailure, compile_template, render

LIMITS = Limits(time_s=0.05, max_chars=200_000)
SECRET = "bud-injection-canary"

PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[-1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__.os.environ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ x.__dict__ }}",
    "{{ x.func_globals }}",
    "{{ x.__globals__ }}",
    "{{ x.__init__.__globals__['os'].environ }}",
    "{{ x['__class__'] }}",
    "{{ x|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format(x) }}",
    "{{ '{0.__init__.__globals__}'.format(x) }}",
    "{{ '%s'|format(x.__class__) }}",
    "{{ '{x.__class__}'.format_map({'x': x}) }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{% set y = x.append(1) %}{{ y }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{{ range.__globals__ }}",
    "{{ x.__reduce_ex__(2) }}",
]

FLOODS = [
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:999999999}'.format(1) }}",
    "{{ '{:{w}}'.format(1, w=999999999) }}",
    "{{ '{x:999999999}'.format_map({'x': 1}) }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s }}{% endmacro %}{{ d('ab', 40) }}",
    "{{ range(100000)|join('x' * 100) }}",
    "{{ ('ab' * 1000)|replace('', 'x' * 1000) }}",
    "{{ ('ab' * 1000).replace('', 'x' * 1000) }}",
]


@pytest.fixture(autouse=True)
def canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUD_INJECTION_CANARY", SECRET)


def _outcome(source: str, **variables: object) -> str:
    start = time.perf_counter()
    try:
        text = render(compile_template(source, "messages[0].template"), variables, LIMITS)
    except (TemplateRuntimeFailure, RenderLimitExceeded) as err:
        text = f"refused: {err}"
    # bounded: nothing hangs (generous against a loaded CI machine)
    assert time.perf_counter() - start < 2.0
    return text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_a_template_reaches_nothing(payload: str) -> None:
    out = _outcome(payload, x="text")
    assert SECRET not in out
    assert "<class" not in out and "<module" not in out and "environ({" not in out
    assert "root:" not in out and "uid=" not in out


@pytest.mark.parametrize("payload", FLOODS)
def test_flood_in_a_template_is_stopped(payload: str) -> None:
    out = _outcome(payload)
    assert out.startswith("refused:"), out[:200]


@pytest.mark.parametrize("payload", PAYLOADS + FLOODS)
def test_payload_as_a_value_renders_inert(payload: str) -> None:
    out = _outcome("Summarise: {{ text }} ({{ text|length }} chars)", text=payload)
    assert out == f"Summarise: {payload} ({len(payload)} chars)"


def test_values_are_not_rendered_twice() -> None:
    """A value is data: rendering never re-reads it as a template (a second pass would run it)."""
    out = _outcome("{{ a }}{{ b }}", a="{{", b=" 7*7 }}")
    assert out == "{{ 7*7 }}"


def test_environment_is_not_a_global() -> None:
    assert os.environ["BUD_INJECTION_CANARY"] == SECRET
    assert _outcome("{{ environ }}").startswith("refused:")
