"""The LiveWeb tool environment: executes browser tool calls against the page cache.

A page is rendered (with selectolax) as compact accessibility-tree-like text:
``# heading`` lines, table rows as ``| a | b |``, list items as ``- item``, links as
``[L3 text]``, form fields as ``[I1 ...]`` and buttons as ``[B1 ...]``. Long pages
are shown ``WINDOW_LINES`` lines at a time. Every observation is a pure function
of (cache, state, call), so replaying the same calls reproduces it exactly. A
failing call never raises: it returns an error observation and a reason id, and
leaves the state as it was.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from orbit.envs.liveweb.cache import Page, PageCache, PageError, normalize_url, resolve_url
from orbit.envs.liveweb.tools import CallError, parse_call

WINDOW_LINES = 24

# Reason ids of calls the environment could not carry out.
OUTSIDE_CACHE = "navigation.outside_cache"
PAGE_INVALID = "cache.page_invalid"
ACTION_INVALID = "action.invalid"
CALL_AFTER_STOP = "trajectory.call_after_stop"

_SKIP_TAGS = frozenset({"head", "script", "style", "noscript", "template", "svg", "iframe", "object"})
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "header", "hr", "main", "nav", "ol", "p", "pre", "section",
    "summary", "table", "tbody", "tfoot", "thead", "ul", "br",
})
_BUTTON_INPUTS = frozenset({"submit", "button", "reset", "image"})
_ELEMENT_ID = re.compile(r"^[LIB]\d+$")


@dataclass(frozen=True)
class Link:
    id: str
    text: str
    target: str | None
    line: int


@dataclass(frozen=True)
class FormField:
    id: str
    name: str
    form: int | None
    line: int


@dataclass(frozen=True)
class Button:
    id: str
    text: str
    form: int | None
    line: int


@dataclass
class Form:
    """A form: its resolved action (None when unusable), method and (name, field id, default) inputs."""

    action: str | None
    method: str
    inputs: list[tuple[str, str | None, str]] = field(default_factory=list)


@dataclass
class RenderedPage:
    url: str
    title: str
    lines: list[str]
    elements: dict[str, Link | FormField | Button]
    forms: list[Form]
    node_ids: dict[int, str]
    tree: LexborHTMLParser

    def link_to(self, url: str, near: int = 0) -> Link | None:
        """The link to ``url`` whose line is nearest to ``near``."""
        links = [e for e in self.elements.values() if isinstance(e, Link) and e.target == url]
        return min(links, key=lambda link: (abs(link.line - near), link.line), default=None)

    def search_field(self, action_path: str) -> FormField | None:
        """The first text field of the first form submitting to ``action_path``."""
        for form in self.forms:
            if form.action is not None and urlsplit(form.action).path == action_path:
                for _, field_id, _ in form.inputs:
                    if field_id is not None:
                        return self.elements[field_id]
        return None

    def line_containing(self, text: str) -> int | None:
        return next((i for i, line in enumerate(self.lines) if text in line), None)


def _collapse(text: str) -> str:
    return " ".join(text.split())


class _Renderer:
    """One pass over a page's DOM producing its lines and interactive elements."""

    def __init__(self, url: str):
        self.url = url
        self.lines: list[str] = []
        self.current: list[str] = []
        self.prefix = ""
        self.elements: dict[str, Link | FormField | Button] = {}
        self.forms: list[Form] = []
        self.form: int | None = None
        self.node_ids: dict[int, str] = {}
        self.counts = {"L": 0, "I": 0, "B": 0}

    def render(self, tree: LexborHTMLParser) -> RenderedPage:
        title_node = tree.css_first("title")
        title = _collapse(title_node.text()) if title_node is not None else ""
        if tree.body is not None:
            self.walk(tree.body)
        self.flush()
        return RenderedPage(self.url, title or self.url, self.lines, self.elements, self.forms,
                            self.node_ids, tree)

    def flush(self) -> None:
        text = _collapse("".join(self.current))
        if text:
            self.lines.append(self.prefix + text)
            self.prefix = ""
        self.current = []

    def new_id(self, kind: str, node: LexborNode) -> str:
        self.counts[kind] += 1
        element_id = f"{kind}{self.counts[kind]}"
        self.node_ids[node.mem_id] = element_id
        return element_id

    def walk(self, node: LexborNode) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.current.append(child.text_content or "")
            elif tag.startswith("-") or tag in _SKIP_TAGS:
                continue
            elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                self.block(child, "#" * int(tag[1]) + " ")
            elif tag == "li":
                self.block(child, "- ")
            elif tag == "tr":
                self.row(child)
            elif tag == "a":
                self.link(child)
            elif tag in ("input", "textarea", "button"):
                self.control(child)
            elif tag == "form":
                self.form_block(child)
            elif tag == "img":
                alt = _collapse(child.attributes.get("alt") or "")
                if alt:
                    self.current.append(f"[image {alt}]")
            elif tag in _BLOCK_TAGS:
                self.block(child, "")
            else:
                self.walk(child)

    def block(self, node: LexborNode, prefix: str) -> None:
        self.flush()
        self.prefix = prefix
        self.walk(node)
        self.flush()

    def row(self, node: LexborNode) -> None:
        self.flush()
        cells = []
        for cell in node.iter():
            if cell.tag in ("td", "th"):
                self.current = []
                self.walk(cell)
                cells.append(_collapse("".join(self.current)))
        self.current = []
        if any(cells):
            self.lines.append("| " + " | ".join(cells) + " |")

    def link(self, node: LexborNode) -> None:
        href = node.attributes.get("href")
        if href is None:
            self.walk(node)
            return
        try:
            target = resolve_url(self.url, href)
        except ValueError:
            target = None
        text = _collapse(node.text()) or _collapse(node.attributes.get("title") or "") or "link"
        link_id = self.new_id("L", node)
        self.elements[link_id] = Link(link_id, text, target, len(self.lines))
        self.current.append(f"[{link_id} {text}]")

    def control(self, node: LexborNode) -> None:
        attrs = node.attributes
        kind = (attrs.get("type") or "text").lower() if node.tag == "input" else node.tag
        name = attrs.get("name") or ""
        if kind == "hidden":
            if self.form is not None and name:
                self.forms[self.form].inputs.append((name, None, attrs.get("value") or ""))
            return
        if node.tag == "button" or kind in _BUTTON_INPUTS:
            text = _collapse(node.text() if node.tag == "button" else attrs.get("value") or "") or "Submit"
            button_id = self.new_id("B", node)
            self.elements[button_id] = Button(button_id, text, self.form, len(self.lines))
            self.current.append(f'[{button_id} button "{text}"]')
            return
        field_id = self.new_id("I", node)
        self.elements[field_id] = FormField(field_id, name, self.form, len(self.lines))
        if self.form is not None and name:
            self.forms[self.form].inputs.append((name, field_id, attrs.get("value") or ""))
        placeholder = _collapse(attrs.get("placeholder") or "")
        hint = f' placeholder "{placeholder}"' if placeholder else ""
        self.current.append(f'[{field_id} {kind} field "{name}"{hint}]')

    def form_block(self, node: LexborNode) -> None:
        self.flush()
        method = (node.attributes.get("method") or "get").lower()
        try:
            action = resolve_url(self.url, node.attributes.get("action") or self.url)
        except ValueError:
            action = None
        outer = self.form
        self.forms.append(Form(action, method))
        self.form = len(self.forms) - 1
        shown = urlsplit(action).path if action else "?"
        self.current.append(f"form {method.upper()} {shown}: ")
        self.walk(node)
        self.flush()
        self.form = outer


def render_page(page: Page) -> RenderedPage:
    """Parse and render one cached page."""
    url = normalize_url(page.url)
    return _Renderer(url).render(LexborHTMLParser(page.html))


@dataclass(frozen=True)
class StepResult:
    """What one tool call produced: the observation text, and a reason id when the call failed."""

    observation: str
    error: str | None = None


def _error(reason: str, detail: str) -> StepResult:
    return StepResult(f"Error ({reason}): {detail}", reason)


class LiveWebEnvironment:
    """A browser over a ``PageCache``; ``reset()`` starts an episode, ``step()`` runs one call.

    Rendered pages are memoised, so one environment can serve many episodes.
    """

    def __init__(self, cache: PageCache, window_lines: int = WINDOW_LINES):
        self.cache = cache
        self.window_lines = window_lines
        self._rendered: dict[str, RenderedPage] = {}
        self.reset()

    def reset(self) -> None:
        self.page: RenderedPage | None = None
        self.offset = 0
        self.typed: dict[str, str] = {}
        self.done = False
        self.answers: list[Any] | dict[str, Any] | None = None

    def step(self, name: str, arguments: str | Mapping[str, Any]) -> StepResult:
        """Run one tool call; ``arguments`` is the call's JSON text (or a dict)."""
        if self.done:
            return _error(CALL_AFTER_STOP, "the episode has ended; no further calls are run")
        parsed = parse_call(name, arguments)
        if isinstance(parsed, CallError):
            return _error(parsed.reason, parsed.detail)
        handler = getattr(self, f"_tool_{name}")
        return handler(**parsed)

    # tools

    def _tool_goto(self, url: str) -> StepResult:
        if self.page is not None:
            try:
                url = resolve_url(self.page.url, url)
            except ValueError:
                pass
        return self._navigate(url)

    def _tool_click(self, selector: str) -> StepResult:
        element = self._select(selector, "LB")
        if isinstance(element, StepResult):
            return element
        if isinstance(element, Link):
            if element.target is None:
                return _error(ACTION_INVALID, f"link {element.id} does not lead to a web page")
            return self._navigate(element.target)
        return self._submit(element.form, element.id)

    def _tool_type(self, selector: str, text: str, press_enter: bool = False) -> StepResult:
        element = self._select(selector, "I")
        if isinstance(element, StepResult):
            return element
        self.typed[element.id] = text
        if press_enter:
            return self._submit(element.form, element.id)
        return StepResult(f'Typed "{text}" into {element.id} ("{element.name}").')

    def _tool_scroll(self, direction: str, amount: int | None = None) -> StepResult:
        return self._move(direction, amount or max(self.window_lines // 2, 1))

    def _tool_view_more(self, direction: str = "down") -> StepResult:
        return self._move(direction, self.window_lines)

    def _tool_stop(self, answers: list | dict) -> StepResult:
        self.done = True
        self.answers = answers
        return StepResult(f"Episode finished with {len(answers)} answer(s).")

    # helpers

    def _navigate(self, url: str) -> StepResult:
        try:
            target = normalize_url(url)
        except ValueError:
            return _error(OUTSIDE_CACHE, f"{url!r} is not a web address in the page cache")
        try:
            page = self.cache.lookup(target)
        except PageError as exc:
            return _error(PAGE_INVALID, str(exc))
        if page is None:
            return _error(OUTSIDE_CACHE, f"{target} is not in the page cache")
        if page.path not in self._rendered:
            self._rendered[page.path] = render_page(page)
        self.page, self.offset, self.typed = self._rendered[page.path], 0, {}
        return StepResult(self.view())

    def _select(self, selector: str, kinds: str) -> Link | FormField | Button | StepResult:
        if self.page is None:
            return _error(ACTION_INVALID, "no page is open; call goto first")
        selector = selector.strip()
        if _ELEMENT_ID.match(selector):
            element = self.page.elements.get(selector)
            if element is None or selector[0] not in kinds:
                return _error(ACTION_INVALID, f"no element {selector} on this page that accepts this action")
            return element
        try:
            nodes = self.page.tree.css(selector)
        except (SelectolaxError, ValueError):
            return _error(ACTION_INVALID, f"invalid CSS selector {selector!r}")
        for node in nodes:
            element_id = self.page.node_ids.get(node.mem_id)
            if element_id is not None and element_id[0] in kinds:
                return self.page.elements[element_id]
        return _error(ACTION_INVALID, f"selector {selector!r} matches no element that accepts this action")

    def _submit(self, form_index: int | None, element_id: str) -> StepResult:
        if form_index is None:
            return _error(ACTION_INVALID, f"{element_id} is not inside a form")
        form = self.page.forms[form_index]
        if form.action is None:
            return _error(ACTION_INVALID, "the form has no usable action URL")
        if form.method != "get":
            return _error(ACTION_INVALID, f"only GET forms can be submitted, this one is {form.method.upper()}")
        query = [(name, self.typed.get(field_id, default) if field_id else default)
                 for name, field_id, default in form.inputs]
        return self._navigate(urlsplit(form.action)._replace(query=urlencode(query)).geturl())

    def _move(self, direction: str, amount: int) -> StepResult:
        if self.page is None:
            return _error(ACTION_INVALID, "no page is open; call goto first")
        last = max(len(self.page.lines) - self.window_lines, 0)
        wanted = self.offset + (amount if direction == "down" else -amount)
        new_offset = min(max(wanted, 0), last)
        note = ""
        if new_offset == self.offset:
            note = f"[already at the {'bottom' if direction == 'down' else 'top'} of the page]\n"
        self.offset = new_offset
        return StepResult(note + self.view())

    def view(self) -> str:
        """The current window of the open page with its header."""
        page = self.page
        total = len(page.lines)
        end = min(self.offset + self.window_lines, total)
        more = ", more below" if end < total else ""
        header = f"[page] {page.title}\n[url] {page.url}\n[lines {min(self.offset + 1, total)}-{end} of {total}{more}]"
        return "\n".join([header, *page.lines[self.offset:end]])

    def visible(self, line: int) -> bool:
        return self.offset <= line < self.offset + self.window_lines
