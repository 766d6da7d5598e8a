"""CSS inlined into a digest's HTML: mail clients drop or mangle <style>, inline styles they keep.

``preinline`` inlines an HTML template's own stylesheet into its source once, keeping the
Jinja code where it was, so each digest is rendered already styled; ``inline_html`` inlines a
rendered page, for a template that cannot be inlined as source. The inliner (css_inline) is
loaded when first needed: the packaged template ships already inlined, so a daemon on it
never loads it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from paperwatch.errors import TemplateError

if TYPE_CHECKING:
    import css_inline


def inline_html(html: str, template: str) -> str:
    """``html`` with its stylesheet inlined; TemplateError naming ``template`` if it cannot be."""
    import css_inline  # see _inliner

    try:
        return _inliner().inline(html)
    except css_inline.InlineError as exc:
        raise TemplateError(f"{template}: its CSS cannot be inlined: {exc}") from exc


_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)


_PLACEHOLDER = re.compile("(<!--)?\ue000([0-9]+)\ue001(?(1)-->)")


_DYNAMIC_SELECTOR = re.compile("""\\b(?:class|id)\\s*=\\s*(?:"[^"]*|'[^']*|)\ue000""")


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    """The CSS inliner, loaded when first needed: only a template directory's HTML template needs
    it (the packaged one was inlined when written), so a daemon on ours never loads it. Remote
    and local stylesheets are never fetched: the template's own <style> is all there is."""
    import css_inline

    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def preinline(source: str) -> str | None:
    """The HTML template's source with its CSS inlined, once at load instead of in every digest;
    None when that cannot be done faithfully (it includes other templates, or names a class or
    id from a variable, or the HTML parser moved its Jinja code), and then each digest's HTML
    is inlined as it is made."""
    if re.search(r"\{%-?\s*(?:include|extends|import|from)\b", source):
        return None
    tokens: list[str] = []
    out: list[str] = []
    last, in_tag = 0, False
    for found in _JINJA.finditer(source):
        html = source[last:found.start()]
        opened, closed = html.rfind("<"), html.rfind(">")
        in_tag = opened > closed if opened != closed else in_tag
        # Between tags a comment, which the parser keeps where it is; in a tag, plain text.
        out += [html, f"\ue000{len(tokens)}\ue001" if in_tag else f"<!--\ue000{len(tokens)}\ue001-->"]
        tokens.append(found.group())
        last = found.end()
    out.append(source[last:])
    marked = "".join(out)
    if _DYNAMIC_SELECTOR.search(marked):
        return None
    import css_inline  # see _inliner

    try:
        inlined = _inliner().inline(marked)
    except css_inline.InlineError:
        return None
    found_order = [(bool(m.group(1)), int(m.group(2))) for m in _PLACEHOLDER.finditer(inlined)]
    expected = [(f"<!--\ue000{n}\ue001-->" in marked, n) for n in range(len(tokens))]
    if found_order != expected:
        return None
    return _PLACEHOLDER.sub(lambda m: tokens[int(m.group(2))], inlined)
