"""Routr's matchFunc, read as data: a small, safe subset of JavaScript. Never eval.

    req => true
    req => req.method === 'MESSAGE'
    req => req.method === "INVITE" && req.message.from.address.uri.user !== "alice"
    req => req.message.extensions.find(e => e.name === "User-Agent" && e.value.includes("Zoiper"))

Supported: string, number and boolean literals; member access on the request; ===,
!==, ==, !=, &&, ||, ! and parentheses; the string methods includes, startsWith,
endsWith, toLowerCase, toUpperCase; the array methods find and some with an arrow
function. Anything else is a configuration error at load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Env = dict[str, Any]
Compiled = Callable[[Env], Any]

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>===|!==|==|!=|=>|&&|\|\||[!().,])
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    )""",
    re.VERBOSE,
)

_STRING_METHODS: dict[str, Callable[..., Any]] = {
    "includes": lambda s, x: isinstance(s, str) and str(x) in s,
    "startsWith": lambda s, x: isinstance(s, str) and s.startswith(str(x)),
    "endsWith": lambda s, x: isinstance(s, str) and s.endswith(str(x)),
    "toLowerCase": lambda s: s.lower() if isinstance(s, str) else s,
    "toUpperCase": lambda s: s.upper() if isinstance(s, str) else s,
}


class MatchFuncError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise MatchFuncError(f"unexpected {text[pos : pos + 10]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if (
            token is None
            or (value is not None and token[1] != value)
            or (kind is not None and token[0] != kind)
        ):
            wanted = value or kind or "more"
            raise MatchFuncError(f"expected {wanted!r}, found {token[1] if token else 'the end'!r}")
        self.i += 1
        return token[1]

    def arrow(self) -> tuple[str, Compiled]:
        name = self.take(kind="name")
        self.take("=>")
        return name, self.expr()

    def expr(self) -> Compiled:
        left = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda env: a(env) or b(env))(left, right)
        return left

    def conjunction(self) -> Compiled:
        left = self.unary()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda env: a(env) and b(env))(left, right)
        return left

    def unary(self) -> Compiled:
        if self.peek() == ("op", "!"):
            self.take()
            inner = self.unary()
            return lambda env: not inner(env)
        return self.comparison()

    def comparison(self) -> Compiled:
        left = self.postfix()
        token = self.peek()
        if token is not None and token[1] in ("===", "!==", "==", "!="):
            self.take()
            right = self.postfix()
            if token[1] in ("===", "=="):
                return lambda env: left(env) == right(env)
            return lambda env: left(env) != right(env)
        return left

    def postfix(self) -> Compiled:
        value = self.primary()
        while self.peek() == ("op", "."):
            self.take()
            name = self.take(kind="name")
            if self.peek() == ("op", "("):
                value = self.call(value, name)
            else:
                value = (lambda v, n: lambda env: _member(v(env), n))(value, name)
        return value

    def call(self, target: Compiled, name: str) -> Compiled:
        self.take("(")
        if name in ("find", "some"):
            param, body = self.arrow()
            self.take(")")

            def search(env: Env) -> Any:
                items = target(env)
                for item in items if isinstance(items, list) else []:
                    if body({**env, param: item}):
                        return item if name == "find" else True
                return None if name == "find" else False

            return search
        method = _STRING_METHODS.get(name)
        if method is None:
            raise MatchFuncError(f"method {name}() is not supported")
        args: list[Compiled] = []
        while self.peek() != ("op", ")"):
            args.append(self.expr())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return lambda env: method(target(env), *(a(env) for a in args))

    def primary(self) -> Compiled:
        kind, value = self.peek() or ("", "")
        if kind == "num":
            self.take()
            number = float(value) if "." in value else int(value)
            return lambda env: number
        if kind == "str":
            self.take()
            text = re.sub(r"\\(.)", r"\1", value[1:-1])
            return lambda env: text
        if kind == "name":
            self.take()
            if value in ("true", "false"):
                flag = value == "true"
                return lambda env: flag
            if value in ("null", "undefined"):
                return lambda env: None
            return lambda env: env.get(value)
        if value == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        raise MatchFuncError(f"unexpected {value or 'end'!r}")


def _member(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    if isinstance(value, list) and name == "length":
        return len(value)
    if isinstance(value, str) and name == "length":
        return len(value)
    return None


class MatchFunc:
    """A compiled matchFunc: call it with the request view (see dispatcher.request_view)."""

    def __init__(self, source: str) -> None:
        self.source = source
        parser = _Parser(source)
        try:
            self.param, self._body = parser.arrow()
            if parser.peek() is not None:
                raise MatchFuncError(f"unexpected {parser.peek()[1]!r} after the expression")  # type: ignore[index]
        except MatchFuncError as error:
            raise MatchFuncError(f"matchFunc {source!r}: {error}") from None
        self.always = parser.tokens[2:] == [("name", "true")]
        self.reads_message = any(t == ("name", "message") for t in parser.tokens)

    def __call__(self, request: dict[str, Any]) -> bool:
        if self.always:
            return True
        return bool(self._body({self.param: request}))
