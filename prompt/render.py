"""Rendering a prompt version's templates: sandboxed, strict and bounded.

The environment is jinja2's `ImmutableSandboxedEnvironment` (no attribute starting with `_`, no
unsafe callables, no mutation of lists or dicts) with `StrictUndefined` (a variable the inputs do
not hold is an error, never an empty string) and no globals but `range` (jinja's sandboxed one,
100 000 items at most). Every render runs under a :class:`Limits` budget:

* time: the deadline is checked wherever a template can spend time without producing output —
  every call (macros included, so recursion is caught), attribute and item lookup, intercepted
  operator and every iteration of a `{% for %}` loop (each loop's iterable is wrapped when the
  template is compiled, so nested empty loops are bounded too);
* size: the operators and string methods that can build a large value from a small template
  (`*`, `**`, `+`, `%`, `center`, `ljust`, `replace`, `format` with a wide field, `join` ...) are
  refused when the result would pass the limit *before* it is built, and the output is counted as
  it is generated.

Over a bound → :class:`RenderLimitExceeded`; a template error (undefined variable, a refused
attribute, a type error) → :class:`TemplateRuntimeFailure` with the message and the template's
line. Both are turned into INVALID_ARGUMENT by :func:`render` callers (``execution.py``).

Templates are compiled once (:func:`compile_template`); the executor caches them per version.
"""

from __future__ import annotations

import operator
import re
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Name of the filter every `{% for %}` iterable is wrapped in (not reachable by a saved template:
# the part-1 save check refuses undeclared names, and it only ever bounds an iteration).
_BOUNDED_ITER = "bud_bounded_iter"
# What a format string may not hold: a width or precision of 100 000 or more, a `*` width (`%`
# formatting) or a nested field in a format spec (`{:{w}}`: a width from a value).
_WIDE_FORMAT = re.compile(r"\d{6,}|\*|:[^{}]*\{")
# str methods whose int arguments are widths of the result.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


@dataclass(frozen=True)
class Limits:
    """The bounds of one render (the prompt component's settings `render_timeout_s`,
    `render_max_chars`)."""

    time_s: float = 0.05
    max_chars: int = 200_000


class RenderLimitExceeded(Exception):
    """A render ran past its time limit or would produce more than its size limit."""


class TemplateRuntimeFailure(Exception):
    """A template failed while rendering: `message`, and `template`/`line` where it failed."""

    def __init__(self, message: str, template: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.template = template
        self.line = line

    def where(self) -> str:
        return f"{self.template}, line {self.line}" if self.line else self.template


@dataclass
class _Budget:
    deadline: float
    max_chars: int

    def tick(self) -> None:
        if time.perf_counter() > self.deadline:
            raise RenderLimitExceeded("the render ran past its time limit")

    def size(self, n: int) -> None:
        if n > self.max_chars:
            raise RenderLimitExceeded(f"the render would produce more than {self.max_chars} characters")


_BUDGET: ContextVar[_Budget | None] = ContextVar("bud_render_budget", default=None)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # rendering outside render(): the tightest defaults
        budget = _Budget(time.perf_counter() + Limits().time_s, Limits().max_chars)
        _BUDGET.set(budget)
    return budget


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _check_format_string(text: Any) -> None:
    """A `%` or `str.format` format string asking for a huge field width or precision."""
    if isinstance(text, str) and _WIDE_FORMAT.search(text):
        raise RenderLimitExceeded("a format field wider than the render's size limit")


def _bounded_iter(value: Any) -> Iterator[Any]:
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


def _replaced_size(text: str, old: str, new: str) -> int:
    """The length of `text.replace(old, new)`, computed without building it."""
    hits = len(text) + 1 if not old else text.count(old)
    return len(text) + hits * (len(new) - len(old))


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuses, before it runs, a str method call that would build a result over the size limit."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    budget = _budget()
    name = getattr(obj, "__name__", "")
    values = [*args, *kwargs.values()]
    if name in _WIDTH_METHODS:
        tab = 1 if name != "expandtabs" else max(owner.count("\t"), 1)
        for value in values:
            if isinstance(value, int):
                budget.size(value * tab)
    elif name == "replace" and len(args) >= 2:
        budget.size(_replaced_size(owner, str(args[0]), str(args[1])))
    elif name == "join" and args and hasattr(args[0], "__len__"):
        items = args[0]
        budget.size(len(owner) * len(items) + sum(_length(i) for i in items))
    elif name in ("format", "format_map"):
        _check_format_string(owner)


def _bounded_filter(name: str, fn: Any) -> Any:
    """A built-in filter with its width arguments checked and its result measured."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        if name == "format" and args:
            _check_format_string(args[-1] if not isinstance(args[0], str) else args[0])
        if name == "replace" and len(args) >= 3 and not isinstance(args[0], str | bytes):
            # (eval_context, value, old, new[, count]): measured before it is built
            budget.size(_replaced_size(str(args[1]), str(args[2]), str(args[3]) if len(args) > 3 else ""))
        widths = [] if name in ("format", "replace") else [*args[1:], *kwargs.values()]
        for value in widths:
            if isinstance(value, int) and not isinstance(value, bool):
                budget.size(value)
        result = fn(*args, **kwargs)
        budget.size(_length(result))
        return result

    # keep jinja's pass_context/pass_environment marks
    for mark in ("jinja_pass_arg",):
        if hasattr(fn, mark):
            setattr(bounded, mark, getattr(fn, mark))
    return bounded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with a time and size budget (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(autoescape=False, undefined=StrictUndefined, auto_reload=False, cache_size=0)
        self.globals = {"range": self.globals["range"]}  # no lipsum, cycler, joiner, namespace
        for name in ("center", "format", "indent", "wordwrap", "truncate", "replace"):
            self.filters[name] = _bounded_filter(name, self.filters[name])
        self.filters[_BOUNDED_ITER] = _bounded_iter

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _BOUNDED_ITER, [], [], None, None, lineno=loop.lineno)
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        budget.tick()
        for value in (*args, *kwargs.values()):  # a macro doubling its argument at each level
            budget.size(_length(value))
        _check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _budget().size(_length(result))
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            # the sandbox hands back its own wrapper of str.format (no `__self__` to check later)
            _check_format_string(obj)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and _length(seq):
                    budget.size(_length(seq) * times)
        elif op == "+":
            budget.size(_length(left) + _length(right))
        elif op == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                # digits of the result; a huge number costs time to build and to print
                budget.size(int(right * max(abs(left).bit_length(), 1) * 0.302) + 1)
        elif op == "%" and isinstance(left, str):
            _check_format_string(left)
        result = operator.mod(left, right) if op == "%" else self.binop_table[op](left, right)
        budget.size(_length(result))
        return result


SANDBOX = BoundedSandbox()


def compile_template(source: str, name: str) -> Template:
    """Compiles a template once (in the bounded sandbox); `name` (a field path such as
    ``messages[1].template``) is what errors name. A syntax error → TemplateRuntimeFailure."""
    try:
        code = SANDBOX.compile(source, name=name, filename=name)
    except TemplateSyntaxError as err:
        raise TemplateRuntimeFailure(err.message or str(err), name, err.lineno) from err
    return SANDBOX.template_class.from_code(SANDBOX, code, SANDBOX.make_globals(None), None)


def _line(err: BaseException, name: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename == name:
            line = frame.lineno
    return line


def render(template: Template, variables: Mapping[str, Any], limits: Limits) -> str:
    """Renders `template` with `variables` within `limits`; raises RenderLimitExceeded or
    TemplateRuntimeFailure."""
    name = template.name or "template"
    budget = _Budget(time.perf_counter() + limits.time_s, limits.max_chars)
    token = _BUDGET.set(budget)
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(dict(variables)):
            size += len(chunk)
            budget.size(size)
            budget.tick()
            out.append(chunk)
        return "".join(out)
    except RenderLimitExceeded:
        raise
    except (SecurityError, UndefinedError) as err:
        raise TemplateRuntimeFailure(str(err), name, _line(err, name)) from None
    except TemplateError as err:
        raise TemplateRuntimeFailure(str(err), name, _line(err, name)) from None
    except RecursionError:
        raise RenderLimitExceeded("the render recursed too deeply") from None
    except MemoryError:
        raise RenderLimitExceeded("the render ran out of memory") from None
    except Exception as err:  # a type error, a zero division, an overflow in the template
        raise TemplateRuntimeFailure(f"{type(err).__name__}: {err}", name, _line(err, name)) from None
    finally:
        _BUDGET.reset(token)


def render_all(templates: Iterable[tuple[Template, Mapping[str, Any]]], limits: Limits) -> list[str]:
    """Renders several templates under one shared budget of time (each under the size limit)."""
    start = time.perf_counter()
    out = []
    for template, variables in templates:
        left = limits.time_s - (time.perf_counter() - start)
        if left <= 0:
            raise RenderLimitExceeded("the render ran past its time limit")
        out.append(render(template, variables, Limits(left, limits.max_chars)))
    return out
