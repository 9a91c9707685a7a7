"""Field extraction rules (``seletores``): named fields to CSS or XPath, evaluated on one parse.

A payload says what it wants from a page as ``{"campo": rule}``. A rule is a CSS selector
(shorthand: a string) or an object with ``css`` or ``xpath``, plus ``lista`` (every match, not
only the first), ``atributo`` (an attribute of the matched elements) or ``html`` (their markup).
CSS goes through parsel's translator (the one Scrapy uses: ``::text`` and ``::attr(name)``
work), and every rule is compiled once per job into an lxml XPath, so a malformed expression
is a :class:`PermanentFailure` naming its field before anything is fetched.

Values: an element gives its text (whitespace collapsed), a text or attribute node its
stripped string, an XPath number or boolean itself. A rule that matches nothing gives ``None``
(or ``[]`` for a list); empty strings are skipped, so ``h1::text`` finds the first words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cssselect import SelectorError
from lxml import etree
from parsel.csstranslator import css2xpath
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orquestrador import PermanentFailure

MAX_CAMPOS = 100
MAX_EXPRESSAO = 2000
MAX_ITENS = 1000
_NAMESPACES = {"re": "http://exslt.org/regular-expressions"}


class RegraSeletor(BaseModel):
    """One field's rule; a plain string stands for ``{"css": string}``."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    css: str | None = Field(default=None, description="CSS selector (parsel: ::text, ::attr(x) work)")
    xpath: str | None = Field(default=None, description="XPath 1.0 expression (EXSLT re: available)")
    lista: bool = Field(default=False, description="every match (a list), not only the first")
    atributo: str | None = Field(default=None, description="this attribute of each matched element")
    html: bool = Field(default=False, description="the matched elements' markup instead of their text")
    max_itens: int = Field(default=MAX_ITENS, ge=1, le=MAX_ITENS, description="a list's cap")

    @model_validator(mode="after")
    def _uma_expressao(self) -> RegraSeletor:
        if (self.css is None) == (self.xpath is None):
            raise ValueError("a rule takes exactly one of 'css' or 'xpath'")
        if self.atributo is not None and self.html:
            raise ValueError("a rule takes 'atributo' or 'html', not both")
        return self


Seletores = dict[str, str | RegraSeletor]


@dataclass(frozen=True)
class Regra:
    """A compiled rule: the field it fills, and how."""

    campo: str
    xpath: etree.XPath
    lista: bool
    atributo: str | None
    html: bool
    max_itens: int


def ler_seletores(valor: object) -> list[Regra]:
    """The payload's ``seletores`` compiled, or PermanentFailure naming the bad field."""
    if valor is None:
        return []
    if not isinstance(valor, dict):
        raise PermanentFailure(f"payload option 'seletores' must be an object of field names to rules, "
                               f"got {type(valor).__name__}")  # fmt: skip
    if len(valor) > MAX_CAMPOS:
        raise PermanentFailure(f"payload option 'seletores' has {len(valor)} fields; at most {MAX_CAMPOS}")
    return [_compilar(campo, regra) for campo, regra in valor.items()]


def _compilar(campo: object, regra: object) -> Regra:
    if not isinstance(campo, str) or not campo or len(campo) > 200:
        raise PermanentFailure(f"seletores: field name {str(campo)[:80]!r} must be text of 1-200 characters")
    if isinstance(regra, RegraSeletor):
        regra = regra.model_dump(exclude_unset=True)
    if isinstance(regra, str):
        regra = {"css": regra}
    if not isinstance(regra, dict):
        raise PermanentFailure(f"seletores[{campo!r}]: a rule is a CSS string or an object, "
                               f"got {type(regra).__name__}")  # fmt: skip
    try:
        spec = RegraSeletor.model_validate(regra)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        erros = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())  # type: ignore[attr-defined]
        raise PermanentFailure(f"seletores[{campo!r}]: {erros}") from None
    expressao = spec.css if spec.css is not None else spec.xpath
    assert expressao is not None
    if len(expressao) > MAX_EXPRESSAO:
        raise PermanentFailure(f"seletores[{campo!r}]: expression longer than {MAX_EXPRESSAO} characters")
    try:
        texto = css2xpath(expressao) if spec.css is not None else expressao
        compilada = etree.XPath(texto, namespaces=_NAMESPACES, smart_strings=False)
    except (SelectorError, etree.XPathError) as exc:
        tipo = "CSS" if spec.css is not None else "XPath"
        raise PermanentFailure(f"seletores[{campo!r}]: invalid {tipo} {expressao[:200]!r}: {exc}") from None
    return Regra(campo, compilada, spec.lista, spec.atributo, spec.html, spec.max_itens)


def _texto(no: Any) -> str:
    return " ".join("".join(no.itertext()).split())


def _valores(regra: Regra, achados: Any) -> list[Any]:
    if not isinstance(achados, list):  # count(), boolean(), string(): one value
        if isinstance(achados, str):
            achados = achados.strip()
        return [achados] if achados != "" else []
    valores: list[Any] = []
    for no in achados:
        if isinstance(no, etree._Element):
            if regra.atributo is not None:
                valor = no.get(regra.atributo)
            elif regra.html:
                valor = etree.tostring(no, method="html", encoding="unicode", with_tail=False)
            elif isinstance(no.tag, str):
                valor = _texto(no)
            else:  # a comment or processing instruction
                valor = (no.text or "").strip()
        else:  # a text or attribute node
            valor = str(no).strip()
        if valor:
            valores.append(valor)
            if not regra.lista or len(valores) >= regra.max_itens:
                break
    return valores


def extrair(raiz: Any, regras: list[Regra]) -> tuple[dict[str, Any], list[str]]:
    """Every rule's value on the parsed page, and the list fields cut at their cap."""
    campos: dict[str, Any] = {}
    cortados: list[str] = []
    for regra in regras:
        try:
            achados = regra.xpath(raiz)
        except etree.XPathError as exc:  # an unknown function or a type error shows only now
            raise PermanentFailure(f"seletores[{regra.campo!r}]: cannot evaluate: {exc}") from None
        valores = _valores(regra, achados)
        if regra.lista:
            campos[regra.campo] = valores
            if len(valores) >= regra.max_itens and isinstance(achados, list) and len(achados) > len(valores):
                cortados.append(regra.campo)
        else:
            campos[regra.campo] = valores[0] if valores else None
    return campos, cortados
