"""The graph schema of DESIGN.md: node and relationship types, their records, and their validation.

Nodes are identified by a key (``name`` for Task/LLM/Agent, ``id`` for Query). Outcome edges
(``ANSWERED_BY`` to an LLM, ``HANDLED_BY`` to an Agent) are unique per (query, target): writing the same pair
again updates the edge. ``OF_TASK`` follows from ``Query.task`` and ``BACKED_BY`` from ``Agent.llm``.

What a record may hold (checked when it is built, so every writer, CLI or API, gets the same answer):

- every string: valid Unicode that encodes as UTF-8 (no lone surrogates such as ``"\ud800"``) and no NUL; and, to be
  written, at most ``MAX_TEXT_CHARS`` (1,000,000) characters, so that every row fits one Bolt message on any backend
  (:func:`check_for_write`, called by ``GraphStore.write``: a longer text an earlier version stored is still read);
- names (Task/LLM/Agent names and the references to them): at most ``MAX_NAME_CHARS`` (200) characters, no
  leading or trailing whitespace, no control characters or line/paragraph separators (Unicode categories Cc, Zl,
  Zp); anything else is allowed (spaces, punctuation, quotes, any script: ``LLaMA-3 (8b)``, ``gpt-4o-2024-05-13``);
  a new one in Unicode NFC form (``non_nfc_name``: one name, one spelling);
- query ids: the same character rule as names (no control characters or separators), any length;
- prices (``input_price``, ``output_price``): finite, 0 to ``MAX_PRICE`` (10,000) USD per 1M tokens;
- outcome ``cost``: finite, 0 to ``MAX_COST`` (1,000) USD per query; ``effect`` in [0, 1];
- an LLM's upstream (optional, how to call it): ``base_url`` an http(s) URL, ``upstream_model`` a name,
  ``api_key_env`` the *name* of an environment variable (``[A-Z_][A-Z0-9_]*``) holding its key, never the key;
  ``upstream_model`` and ``api_key_env`` only with a ``base_url``;
- an LLM's ``priced_at``: when its prices last changed in the store (UTC to the second, set by an import that
  changes them), "" if never: the costs of its outcomes observed before it were billed at other prices, so they do
  not teach its cost multiplier (``graphrouter.routing_data.RoutingData.billed_now``).

A :class:`PendingOutcome` is a forwarded call whose cost is known and whose effect is not yet (the proxy records it,
feedback completes it into an :class:`Outcome`). It is kept apart from the outcome edges, so nothing that reads
outcomes (training, the scorer, exports) can mistake "no effect yet" for an effect of 0.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from graph_store.errors import InvalidInputError

TASK, QUERY, LLM, AGENT = "Task", "Query", "LLM", "Agent"
NODE_LABELS: tuple[str, ...] = (TASK, QUERY, LLM, AGENT)
NODE_KEY: dict[str, str] = {TASK: "name", QUERY: "id", LLM: "name", AGENT: "name"}

OF_TASK, ANSWERED_BY, HANDLED_BY, BACKED_BY = "OF_TASK", "ANSWERED_BY", "HANDLED_BY", "BACKED_BY"
EDGE_TYPES: tuple[tuple[str, str, str], ...] = (
    (QUERY, OF_TASK, TASK),
    (QUERY, ANSWERED_BY, LLM),
    (QUERY, HANDLED_BY, AGENT),
    (AGENT, BACKED_BY, LLM),
)
OUTCOME_REL: dict[str, str] = {LLM: ANSWERED_BY, AGENT: HANDLED_BY}

CandidateKind = Literal["LLM", "Agent"]

MAX_NAME_CHARS = 200  # Task/LLM/Agent names; the longest in the shipped data sets is 31
MAX_QUERY_ID_CHARS = 512  # a query id given with new data (ids stored before are read whatever their length)
MAX_PRICE = 10_000.0  # USD per 1M tokens; the dearest LLM in the shipped data sets costs 15
MAX_COST = 1_000.0  # USD per query (one outcome); the shipped data sets' largest is about 0.013
# Unicode categories Cc (control characters, exactly these two ranges), Zl and Zp (line/paragraph separators)
_BAD_KEY_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_URL_CHARS = 2_000
MAX_TEXT_CHARS = 1_000_000  # any string: 4 MB of UTF-8 at most, well inside a Bolt message (16 MiB on ArcadeDB)
NAME_RULE = f"at most {MAX_NAME_CHARS} characters, no leading/trailing whitespace, no control characters or line breaks"


def query_id(text: str) -> str:
    """Stable id of a query: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _text(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidInputError(f"{what} must not contain NUL characters")
    bad = _LONE_SURROGATE.search(value)
    if bad:
        raise InvalidInputError(
            f"{what} must be valid Unicode: it holds a lone surrogate {bad.group()!r} at character {bad.start()}"
        )
    return value


def _key(value: Any, what: str, *, is_name: bool = True) -> str:
    """A node key or a reference to one: see the module docstring for the rule."""
    _text(value, what)
    rule = NAME_RULE if is_name else "no control characters or line breaks"
    bad = _BAD_KEY_CHAR.search(value)
    if bad:
        raise InvalidInputError(
            f"{what} holds the control character {bad.group()!r} at character {bad.start()}; allowed: {rule}"
        )
    if is_name:
        if len(value) > MAX_NAME_CHARS:
            raise InvalidInputError(f"{what} is {len(value):,} characters long; allowed: {rule}")
        if value != value.strip():
            raise InvalidInputError(f"{what} {value!r} has leading or trailing whitespace; allowed: {rule}")
    return value


_PRICE_UNIT = " USD per 1M tokens"


def _number(value: Any, what: str, *, lo: float | None = None, hi: float | None = None, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range
        v = math.inf
    if not math.isfinite(v):
        span = f" from {lo:,} to {hi:,}{unit}" if lo is not None and hi is not None else ""
        raise InvalidInputError(f"{what} must be a finite number{span}, got {value!r}")
    if lo is not None and v < lo:
        raise InvalidInputError(f"{what} must be >= {lo}, got {value!r}")
    if hi is not None and v > hi:
        raise InvalidInputError(f"{what} must be <= {hi:,}{unit}, got {value!r}")
    return v + 0.0  # -0.0 is stored as 0.0 on every backend (SQLite REAL drops its sign, Bolt keeps it)


def _embedding(value: Any, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vec = tuple(float(x) for x in value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a list of numbers") from exc
    if not vec or not all(math.isfinite(x) for x in vec):
        raise InvalidInputError(f"{what} must be a non-empty list of finite numbers")
    return vec


@dataclass(frozen=True)
class Task:
    name: str
    description: str = ""
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _key(self.name, "Task.name")
        _text(self.description, "Task.description", allow_empty=True)
        object.__setattr__(self, "embedding", _embedding(self.embedding, "Task.embedding"))

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class Query:
    text: str
    task: str
    id: str = ""
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _text(self.text, "Query.text")
        _key(self.task, "Query.task")
        if not self.id:
            object.__setattr__(self, "id", query_id(self.text))
        _key(self.id, "Query.id", is_name=False)
        object.__setattr__(self, "embedding", _embedding(self.embedding, "Query.embedding"))

    @property
    def key(self) -> str:
        return self.id


def _base_url(value: Any, what: str) -> str:
    _text(value, what)
    bad = _BAD_KEY_CHAR.search(value)
    if bad or len(value) > MAX_URL_CHARS or value != value.strip():
        raise InvalidInputError(
            f"{what} must be an http(s) URL of at most {MAX_URL_CHARS:,} characters without whitespace or control "
            "characters around it"
        )
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what} must be a valid http(s) URL, got {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"{what} must be an http:// or https:// URL with a host, got {value!r}")
    if parts.username or parts.password:
        raise InvalidInputError(f"{what} must not hold credentials; name the key's environment variable in api_key_env")
    return value


def port_problem(base_url: str) -> str | None:
    """What is wrong with the port of an upstream URL (out of range, not a number, 0), or None. Checked where an
    upstream is given (the API's upstream bodies), not on reading a stored LLM: one stored before the check must
    still load (the proxy then skips it as uncallable)."""
    try:
        port = urllib.parse.urlsplit(base_url).port  # parsed on access
    except ValueError as exc:
        return f"its port is not valid ({exc})"
    return "its port must be from 1 to 65535" if port == 0 else None


def _env_name(value: Any, what: str) -> str:
    _text(value, what)
    if not _ENV_NAME.fullmatch(value) or len(value) > MAX_NAME_CHARS:
        raise InvalidInputError(
            f"{what} must be the NAME of an environment variable ([A-Z_][A-Z0-9_]*, e.g. OPENAI_API_KEY), "
            "never the key itself"
        )
    return value


@dataclass(frozen=True)
class LLMNode:
    name: str
    description: str = ""
    input_price: float = 0.0
    output_price: float = 0.0
    size_b: float | None = None
    embedding: tuple[float, ...] | None = None
    base_url: str | None = None  # an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1
    upstream_model: str | None = None  # the model id the upstream knows it by (default: the name)
    api_key_env: str | None = None  # the name of the environment variable holding its key
    # when its prices last changed in the store (UTC to the second, as Outcome.observed_at; set by an import with
    # --update): its outcomes' costs observed before then were billed at other prices. "": never changed
    priced_at: str = ""

    def __post_init__(self) -> None:
        _key(self.name, "LLM.name")
        object.__setattr__(self, "priced_at", self.priced_at or "")  # a stored NULL (a file from before it)
        _text(self.priced_at, "LLM.priced_at", allow_empty=True)
        if self.base_url is not None:
            _base_url(self.base_url, "LLM.base_url")
        elif self.upstream_model is not None or self.api_key_env is not None:
            raise InvalidInputError("LLM.upstream_model and LLM.api_key_env need a base_url")
        if self.upstream_model is not None:
            _key(self.upstream_model, "LLM.upstream_model")
        if self.api_key_env is not None:
            _env_name(self.api_key_env, "LLM.api_key_env")
        _text(self.description, "LLM.description", allow_empty=True)
        object.__setattr__(
            self, "input_price", _number(self.input_price, "LLM.input_price", lo=0, hi=MAX_PRICE, unit=_PRICE_UNIT)
        )
        object.__setattr__(
            self, "output_price", _number(self.output_price, "LLM.output_price", lo=0, hi=MAX_PRICE, unit=_PRICE_UNIT)
        )
        if self.size_b is not None:
            object.__setattr__(self, "size_b", _number(self.size_b, "LLM.size_b", lo=0))
        object.__setattr__(self, "embedding", _embedding(self.embedding, "LLM.embedding"))

    @property
    def key(self) -> str:
        return self.name

    @property
    def registration(self) -> tuple[Any, ...]:
        """What a client registers and routing depends on: not the stored embedding (derived from the
        description), nor the upstream (how to call a model does not change how it routes), nor when its prices
        last changed."""
        return (self.name, self.description, self.input_price, self.output_price, self.size_b)


def billed_since(observed_at: str | None, priced_at: str) -> bool:
    """Whether a cost observed at ``observed_at`` (None or "": unknown) was billed at the prices an LLM has had since
    ``priced_at`` (its ``priced_at``; "": they never changed). Both are UTC to the second, so they compare as text."""
    return (observed_at or "") >= priced_at


@dataclass(frozen=True)
class Agent:
    name: str
    llm: str
    description: str = ""
    strategy: str = ""
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _key(self.name, "Agent.name")
        _key(self.llm, "Agent.llm")
        _text(self.description, "Agent.description", allow_empty=True)
        _text(self.strategy, "Agent.strategy", allow_empty=True)
        object.__setattr__(self, "embedding", _embedding(self.embedding, "Agent.embedding"))

    @property
    def key(self) -> str:
        return self.name

    @property
    def registration(self) -> tuple[Any, ...]:
        """What a client registers (not the stored embedding, derived from the description)."""
        return (self.name, self.llm, self.description, self.strategy)


@dataclass(frozen=True)
class Outcome:
    """An observed outcome: query ``query_id`` was answered by LLM (or handled by Agent) ``target``."""

    query_id: str
    target: str
    effect: float
    cost: float
    kind: CandidateKind = LLM  # type: ignore[assignment]
    source: str = ""
    observed_at: str = ""  # ISO-8601; empty means "unknown"

    def __post_init__(self) -> None:
        _key(self.query_id, "Outcome.query_id", is_name=False)
        _key(self.target, "Outcome.target")
        if self.kind not in OUTCOME_REL:
            raise InvalidInputError(f"Outcome.kind must be 'LLM' or 'Agent', got {self.kind!r}")
        object.__setattr__(self, "effect", _number(self.effect, "Outcome.effect", lo=0.0, hi=1.0))
        object.__setattr__(self, "cost", _number(self.cost, "Outcome.cost", lo=0.0, hi=MAX_COST, unit=" USD per query"))
        _text(self.source, "Outcome.source", allow_empty=True)
        _text(self.observed_at, "Outcome.observed_at", allow_empty=True)

    @property
    def rel(self) -> str:
        return OUTCOME_REL[self.kind]


@dataclass(frozen=True)
class PendingOutcome:
    """A forwarded call awaiting its effect: ``response_id`` (the id the client got) → query, target and cost."""

    response_id: str
    query_id: str
    target: str
    cost: float
    kind: CandidateKind = LLM  # type: ignore[assignment]
    source: str = "proxy"
    observed_at: str = ""

    def __post_init__(self) -> None:
        _key(self.response_id, "PendingOutcome.response_id", is_name=False)
        if len(self.response_id) > MAX_NAME_CHARS:
            raise InvalidInputError(f"PendingOutcome.response_id is longer than {MAX_NAME_CHARS} characters")
        _key(self.query_id, "PendingOutcome.query_id", is_name=False)
        _key(self.target, "PendingOutcome.target")
        if self.kind not in OUTCOME_REL:
            raise InvalidInputError(f"PendingOutcome.kind must be 'LLM' or 'Agent', got {self.kind!r}")
        object.__setattr__(
            self, "cost", _number(self.cost, "PendingOutcome.cost", lo=0.0, hi=MAX_COST, unit=" USD per query")
        )
        _text(self.source, "PendingOutcome.source", allow_empty=True)
        _text(self.observed_at, "PendingOutcome.observed_at", allow_empty=True)

    def complete(self, effect: float, observed_at: str | None = None) -> Outcome:
        """The outcome this becomes once its effect is known."""
        return Outcome(
            self.query_id,
            self.target,
            effect,
            self.cost,
            kind=self.kind,
            source=self.source,
            observed_at=observed_at if observed_at is not None else self.observed_at,
        )


NodeRecord = Task | Query | LLMNode | Agent
NODE_CLASS: dict[str, type] = {TASK: Task, QUERY: Query, LLM: LLMNode, AGENT: Agent}
LABEL_OF: dict[type, str] = {cls: label for label, cls in NODE_CLASS.items()}


def node_label(node: NodeRecord) -> str:
    return LABEL_OF[type(node)]


def node_props(node: NodeRecord) -> dict[str, Any]:
    """The node's properties as stored (embedding as a list, ``None`` values dropped)."""
    props = {k: v for k, v in asdict(node).items() if v is not None}
    if "embedding" in props:
        props["embedding"] = list(props["embedding"])
    return props


def check_for_write(record: NodeRecord | Outcome | PendingOutcome) -> None:
    """What a record must also be to be written (what an earlier version stored is read as it is):
    :class:`InvalidInputError` if a string of ``record`` is longer than ``MAX_TEXT_CHARS``."""
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            kind = LLM if isinstance(record, LLMNode) else type(record).__name__
            key = record.query_id if isinstance(record, Outcome | PendingOutcome) else record.key
            raise InvalidInputError(
                f"{kind}.{f.name} of {key[:80]!r} is {len(value):,} characters long; the limit is {MAX_TEXT_CHARS:,}"
            )


def nfc_problem(name: str) -> str | None:
    """What is wrong with a new name not in Unicode NFC form (``"cafe\u0301"`` and ``"café"`` look the same, and
    would be two LLMs), and how to write it; None if it is in NFC form."""
    if name.isascii() or unicodedata.is_normalized("NFC", name):
        return None
    return (
        f"{ascii(name)} is not in Unicode NFC form (it has decomposed characters, as some systems write them): write "
        f"it as {unicodedata.normalize('NFC', name)!r}, each accented letter one character"
    )


def non_nfc_name(node: NodeRecord) -> str | None:
    """The refusal of a Task/LLM/Agent whose name is not in Unicode NFC form (:func:`nfc_problem`), None if it is (or
    is a query). ``GraphStore.write`` refuses such a node unless it is stored already (written by an earlier version:
    it can still be updated)."""
    if isinstance(node, Query) or (why := nfc_problem(node.key)) is None:
        return None
    kind = LLM if isinstance(node, LLMNode) else type(node).__name__
    return f"{kind}.name {why}"


def node_from_props(label: str, props: dict[str, Any]) -> NodeRecord:
    cls = NODE_CLASS[label]
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in props.items() if k in names})


def check_label(label: str) -> str:
    if label not in NODE_LABELS:
        raise InvalidInputError(f"unknown node label {label!r}; expected one of {', '.join(NODE_LABELS)}")
    return label


@dataclass
class GraphBatch:
    """Nodes and outcome edges written together, atomically: all of it lands or none of it does."""

    tasks: list[Task] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    llms: list[LLMNode] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    pending: list[PendingOutcome] = field(default_factory=list)  # forwarded calls awaiting their effect

    def __len__(self) -> int:
        return sum(len(x) for x in (self.tasks, self.queries, self.llms, self.agents, self.outcomes, self.pending))

    def nodes(self, label: str) -> list:
        return {TASK: self.tasks, QUERY: self.queries, LLM: self.llms, AGENT: self.agents}[label]
